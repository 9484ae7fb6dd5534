/** What every page receives: the route parts after its own section (`#/training/jobs/<id>` → ["jobs", id]). */
export interface PageProps {
  route: string[];
}
