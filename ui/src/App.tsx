import { useCallback, useEffect, useRef, useState } from "react";
import { api, LiveRun } from "./api/client";
import { DEFAULT_VIEW, href, useRoute } from "./router";
import { toSpec, writeUrl } from "./state";
import { useSession } from "./store";
import { VIEWS } from "./views";

// The shell: header, view tabs, the prompt bar and the live next-token run, shared by every view.
export function App() {
  const { model, modelError, prompt, iv, connected, run, setModel, setPrompt, setRun, setConnected } = useSession();
  const route = useRoute();
  const [draft, setDraft] = useState(prompt || "The Eiffel Tower is located in the city of");
  const [inputError, setInputError] = useState<string | null>(null);
  const live = useRef<LiveRun | null>(null);

  useEffect(() => {
    api.model().then(
      (m) => setModel(m),
      (e: Error) => setModel(null, e.message),
    );
    live.current = new LiveRun(
      (r) => setRun({ data: r, loading: false, error: null }),
      (msg) => setRun({ data: null, loading: false, error: msg }),
      setConnected,
    );
    return () => live.current?.close();
  }, [setModel, setRun, setConnected]);

  // a view may set the prompt (the attack panel's Apply): show it in the prompt bar too
  useEffect(() => setDraft((d) => (prompt && prompt !== d ? prompt : d)), [prompt]);

  const key = JSON.stringify(toSpec(iv));
  useEffect(() => {
    writeUrl(prompt, iv);
    if (!prompt) return;
    setRun((s) => ({ ...s, loading: true }));
    live.current?.send(prompt, toSpec(iv));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [prompt, key]);

  const submit = useCallback(() => {
    const text = draft;
    if (!text.trim()) {
      setInputError("Type a prompt first: the model needs at least one token.");
      return;
    }
    if (model && text.length > model.limits.max_prompt_chars) {
      setInputError(`The prompt is ${text.length} characters; this server accepts at most ${model.limits.max_prompt_chars}.`);
      return;
    }
    setInputError(null);
    setPrompt(text);
  }, [draft, model, setPrompt]);

  const view = VIEWS.find((v) => v.id === route.view) ?? VIEWS.find((v) => v.id === DEFAULT_VIEW)!;
  // A view opened by its address (a link, a bookmark, a reload, or a tab after a view without a prompt bar)
  // runs the prompt shown in its box, as Run would: nothing has run in this page yet, so the box is the only
  // prompt there is, and a view that waited for a click would show nothing but "run a prompt first".
  useEffect(() => {
    if (view.usesPrompt && !prompt && draft.trim()) submit();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [view.usesPrompt, prompt]);

  if (modelError) {
    return (
      <main className="app">
        <div className="error banner" role="alert">
          {modelError}
        </div>
      </main>
    );
  }

  const View = view.component;
  const serverError = run.error;
  return (
    <main className="app">
      <header className="top">
        <h1>
          NeuroScope <span className="muted">{model ? `${model.name} · ${model.n_layers} layers × ${model.n_heads} heads` : "loading model…"}</span>
        </h1>
        <span className={`conn ${connected ? "on" : "off"}`} data-testid="connection">
          {connected ? "live" : "connecting…"}
        </span>
      </header>
      <nav className="views" aria-label="views">
        {VIEWS.map((v) => (
          <a key={v.id} href={href(v.id)} className={v.id === view.id ? "active" : ""} aria-current={v.id === view.id ? "page" : undefined} data-testid={`nav-${v.id}`}>
            {v.title}
          </a>
        ))}
        {model?.web && (
          <a href="/web/" data-testid="nav-web" title="the ONNX export running in this browser (NeuroScope-Web)">
            Web (ONNX) ↗
          </a>
        )}
      </nav>

      {view.usesPrompt && (
        <>
          <form
            className="prompt"
            onSubmit={(e) => {
              e.preventDefault();
              submit();
            }}
          >
            <textarea
              data-testid="prompt-input"
              value={draft}
              rows={2}
              onChange={(e) => setDraft(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && !e.shiftKey) {
                  e.preventDefault();
                  submit();
                }
              }}
              aria-label="prompt"
            />
            <button type="submit" data-testid="run-button">
              Run
            </button>
          </form>
          {(inputError || serverError) && (
            <div className="error banner" role="alert" data-testid="error-banner">
              {inputError ?? serverError}
            </div>
          )}
        </>
      )}
      <View rest={route.rest} />
    </main>
  );
}
