import { href } from "../../router";
import type { PageProps } from "../types";
import { JobPage } from "./JobPage";
import { JobsList } from "./JobsList";
import { ModelPage } from "./ModelPage";
import { ModelsList } from "./ModelsList";
import { NewJob } from "./NewJob";
import "./training.css";

const TABS = [
  { route: [], title: "Jobs", matches: (r: string[]) => !r.length || r[0] === "jobs" },
  { route: ["new"], title: "New job", matches: (r: string[]) => r[0] === "new" },
  { route: ["models"], title: "Model registry", matches: (r: string[]) => r[0] === "models" },
];

/** Training: `#/training` (jobs), `#/training/jobs/<id>`, `#/training/new`, `#/training/models`,
 * `#/training/models/<name>`. */
export function TrainingPage({ route }: PageProps) {
  const [section, id] = route;
  let body;
  if (section === "jobs" && id) body = <JobPage key={id} jobId={id} />;
  else if (section === "new") body = <NewJob />;
  else if (section === "models" && id) body = <ModelPage key={id} name={id} />;
  else if (section === "models") body = <ModelsList />;
  else body = <JobsList />;
  return (
    <div className="training">
      <nav aria-label="Training" className="subnav">
        <ul>
          {TABS.map((tab) => (
            <li key={tab.title}>
              <a
                href={href("training", ...tab.route)}
                aria-current={tab.matches(route) ? (route.length > 1 ? "location" : "page") : undefined}
              >
                {tab.title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      {body}
    </div>
  );
}
