import { useState } from "react";
import { getApiKey, setApiKey } from "./api/client";
import { ChatPage } from "./pages/chat/ChatPage";
import { GatingPage } from "./pages/gating/GatingPage";
import { LearnersPage } from "./pages/learners/LearnersPage";
import { TrainingPage } from "./pages/training/TrainingPage";
import { WheelPage } from "./pages/wheel/WheelPage";
import { href, useRoute } from "./router";

const PAGES = [
  { path: "wheel", title: "Token wheel", Page: WheelPage },
  { path: "learners", title: "Learners", Page: LearnersPage },
  { path: "training", title: "Training", Page: TrainingPage },
  { path: "chat", title: "Chat", Page: ChatPage },
  { path: "gating", title: "Gating", Page: GatingPage },
] as const;

function ApiKeyBox() {
  const [draft, setDraft] = useState(getApiKey());
  const [saved, setSaved] = useState(getApiKey());
  return (
    <form
      className="apikey"
      onSubmit={(e) => {
        e.preventDefault();
        setApiKey(draft.trim());
        setSaved(draft.trim());
        window.location.reload();
      }}
    >
      <label htmlFor="api-key">API key</label>
      <input
        id="api-key"
        type="password"
        autoComplete="off"
        placeholder={saved ? "saved" : "none (open deployment)"}
        value={draft}
        onChange={(e) => setDraft(e.target.value)}
      />
      <button type="submit">Save key</button>
    </form>
  );
}

export function App() {
  const [section, ...rest] = useRoute();
  const current = PAGES.find((p) => p.path === section) ?? PAGES[0];
  const { Page } = current;
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <a className="brand" href={href(PAGES[0].path)}>
          Lyceum
        </a>
        <nav aria-label="Sections">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={href(p.path)} aria-current={p === current ? "page" : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <ApiKeyBox />
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={rest} />
      </main>
    </>
  );
}
