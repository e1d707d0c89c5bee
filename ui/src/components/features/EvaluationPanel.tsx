import { useEffect, useRef, useState } from "react";
import type { components } from "../../api/schema";
import { api } from "../../api/client";
import { useSession } from "../../store";
import { Panel } from "../Panel";

type S = components["schemas"];
type Message = S["EvalReady"] | S["EvalProgress"] | S["EvalResult"] | S["EvalError"] | S["EvalEffects"];
interface EffectRow { sae: string; feature: number; effect: number; act_triggered: number; act_clean: number; label: string | null }
interface EffectsOut { prompt: string; metric: string; metric_triggered: number; metric_clean: number; features: EffectRow[] }
interface RateOut { value: number; ci: number[]; k: number; n: number }
interface MeanOut { value: number; ci: number[]; n: number }
interface PanelOut {
  edits: string[];
  asr: RateOut;
  false_trigger: RateOut;
  clean_agreement: MeanOut;
  clean_exact: RateOut;
  prompts: { source: string; n_triggered: number; n_clean: number };
}
interface FilePrompts { triggered: string[]; clean: string[]; name: string }

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

// The evaluation panel: attack success and clean agreement of this client's active edits over the
// organism's held-out prompts (or a file), re-run on the server (/ws/evaluate) when the edits change.
export function EvaluationPanel() {
  const edits = useSession((s) => s.iv.edits);
  const prompt = useSession((s) => s.prompt);
  const effSeq = useRef(0);
  const [effects, setEffects] = useState<EffectsOut | null>(null);
  const [effError, setEffError] = useState<string | null>(null);
  const setIv = useSession((s) => s.setIv);
  const ws = useRef<WebSocket | null>(null);
  const seq = useRef(0);
  const [ready, setReady] = useState<S["EvalReady"] | null>(null);
  const [progress, setProgress] = useState<{ done: number; total: number } | null>(null);
  const [result, setResult] = useState<PanelOut | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [file, setFile] = useState<FilePrompts | null>(null);
  const [prepared, setPrepared] = useState<string[]>([]);

  useEffect(() => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const sock = new WebSocket(`${proto}//${location.host}/ws/evaluate`);
    ws.current = sock;
    sock.onmessage = (ev) => {
      const m = JSON.parse(ev.data) as Message;
      if (m.type === "ready") setReady(m);
      else if (typeof m.id === "string" && m.id.startsWith("fx")) {
        // the top features by effect for the current prompt (ids "fx<n>"; older answers are dropped)
        if (m.id !== `fx${effSeq.current}`) return;
        if (m.type === "effects") {
          setEffects(m.result as unknown as EffectsOut);
          setEffError(null);
        } else if (m.type === "error") setEffError(m.detail);
      } else if (m.id !== seq.current) return; // an answer to a superseded request
      else if (m.type === "progress") setProgress({ done: m.done, total: m.total });
      else if (m.type === "result") {
        setResult(m.result as unknown as PanelOut);
        setProgress(null);
        setError(null);
      } else if (m.type === "error") {
        setError(m.detail);
        setProgress(null);
      }
    };
    sock.onclose = () => ws.current === sock && setError("The evaluation connection closed; reload the page.");
    return () => {
      ws.current = null;
      sock.close();
    };
  }, []);

  // the server's prepared edits, to toggle here as well as in a feature's patch control
  useEffect(() => {
    api.edits().then((r) => setPrepared(r.edits.map((e) => e.name)), () => undefined);
  }, [edits]);

  const canRun = ready !== null && (ready.prompts !== null || file !== null);
  const key = JSON.stringify([edits, file?.name ?? null]);
  useEffect(() => {
    if (!canRun) return;
    // debounced: toggling several edits quickly runs the evaluation once
    const timer = setTimeout(() => {
      const sock = ws.current;
      if (!sock || sock.readyState !== WebSocket.OPEN) return;
      const id = ++seq.current;
      setProgress({ done: 0, total: 0 });
      const prompts = file ? { triggered: file.triggered, clean: file.clean } : null;
      sock.send(JSON.stringify({ type: "evaluate", id, edits, prompts }));
    }, 300);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, canRun]);

  // the features that drive the response for the current prompt (the organism's first held-out prompt if it
  // has no trigger yet: the server says so)
  useEffect(() => {
    if (!ready?.prompts) return;
    const timer = setTimeout(() => {
      const sock = ws.current;
      if (!sock || sock.readyState !== WebSocket.OPEN) return;
      const id = `fx${++effSeq.current}`;
      sock.send(JSON.stringify({ type: "effects", id, prompt: prompt || null, top: 10 }));
    }, 300);
    return () => clearTimeout(timer);
  }, [prompt, ready]);

  const onFile = async (f: File | undefined) => {
    if (!f) return setFile(null);
    try {
      const d = JSON.parse(await f.text()) as { triggered?: unknown; clean?: unknown };
      const list = (x: unknown) => (Array.isArray(x) ? x.filter((s): s is string => typeof s === "string" && s.trim() !== "") : []);
      const [triggered, clean] = [list(d.triggered), list(d.clean)];
      const missing = [!triggered.length && "triggered", !clean.length && "clean"].filter(Boolean);
      if (missing.length) throw new Error(`The file has no ${missing.join(" and no ")} prompts: give {"triggered": [...], "clean": [...]}.`);
      setError(null);
      setFile({ triggered, clean, name: f.name });
    } catch (e) {
      setError(`${f.name}: ${(e as Error).message}`);
    }
  };
  const toggle = (name: string) =>
    setIv((old) => ({ ...old, edits: old.edits.includes(name) ? old.edits.filter((e) => e !== name) : [...old.edits, name] }));

  const running = progress !== null;
  const frac = progress && progress.total ? progress.done / progress.total : 0;
  return (
    <Panel title="Evaluation: attack success and clean agreement of the active edits" testid="evaluation-panel" wide>
      {ready && ready.prompts === null && !file && (
        <p className="muted">This server serves no organism: start it with `neuroscope ui --organism DIR`, or choose a prompt file.</p>
      )}
      <div className="row">
        <span className="muted" data-testid="eval-source">
          {file ? `file ${file.name} (${file.triggered.length} triggered, ${file.clean.length} clean)` : ready?.prompts ? `${ready.prompts.source}, response “${ready.prompts.response}”` : ""}
        </span>
        <label>
          prompt file (JSON) <input type="file" accept=".json,application/json" onChange={(e) => onFile(e.target.files?.[0])} data-testid="eval-file" />
        </label>
      </div>
      {prepared.length > 0 && (
        <div className="row" data-testid="eval-edits">
          {prepared.map((n) => (
            <label key={n} className="mono">
              <input type="checkbox" checked={edits.includes(n)} onChange={() => toggle(n)} data-testid="eval-edit" data-name={n} /> {n}
            </label>
          ))}
        </div>
      )}
      <div className="progress" data-testid="eval-progress" data-running={running ? "true" : "false"} role="progressbar" aria-valuenow={Math.round(100 * frac)} aria-valuemin={0} aria-valuemax={100}>
        <div className="progress-fill" style={{ width: `${100 * (running ? frac : result ? 1 : 0)}%` }} />
      </div>
      {running && progress && <span className="muted">{progress.total ? `${progress.done}/${progress.total} prompts` : "queued…"}</span>}
      {error && <div className="error" role="alert" data-testid="eval-error">{error}</div>}
      {result && (
        <table className="numbers" data-testid="eval-result" data-edits={result.edits.join(",")} data-source={result.prompts.source} data-stale={running ? "true" : "false"}>
          <tbody>
            <tr>
              <td>attack success</td>
              <td data-testid="eval-asr" data-value={result.asr.value}>{pct(result.asr.value)}</td>
              <td className="muted">{result.asr.k}/{result.asr.n} [{pct(result.asr.ci[0])}, {pct(result.asr.ci[1])}]</td>
            </tr>
            <tr>
              <td>clean agreement</td>
              <td data-testid="eval-agreement" data-value={result.clean_agreement.value}>{result.clean_agreement.value.toFixed(3)}</td>
              <td className="muted">greedy argmax vs the unedited model, {result.clean_agreement.n} prompts</td>
            </tr>
            <tr>
              <td>false triggers</td>
              <td>{pct(result.false_trigger.value)}</td>
              <td className="muted">{result.false_trigger.k}/{result.false_trigger.n} clean prompts</td>
            </tr>
            <tr>
              <td>clean answers unchanged</td>
              <td>{pct(result.clean_exact.value)}</td>
              <td className="muted">{result.clean_exact.k}/{result.clean_exact.n}</td>
            </tr>
          </tbody>
        </table>
      )}
      <p className="hint">Edits: {edits.length ? edits.join(", ") : "none (the unedited model)"}</p>
      {effError && <div className="muted" data-testid="eval-effects-error">Top features by effect: {effError}</div>}
      {effects && (
        <table className="numbers" data-testid="eval-effects" data-prompt={effects.prompt}>
          <caption className="muted">
            Top features by causal effect on the response for {prompt ? "the current prompt" : "the first held-out prompt"} ({effects.metric}: {effects.metric_triggered.toFixed(2)} triggered, {effects.metric_clean.toFixed(2)} clean)
          </caption>
          <thead>
            <tr><th>feature</th><th>effect</th><th>act. triggered</th><th>act. clean</th><th>label</th></tr>
          </thead>
          <tbody>
            {effects.features.map((f) => (
              <tr key={`${f.sae}/${f.feature}`} data-testid="eval-effect-row">
                <td className="mono">{f.sae}/{f.feature}</td>
                <td>{f.effect.toFixed(4)}</td>
                <td>{f.act_triggered.toFixed(3)}</td>
                <td>{f.act_clean.toFixed(3)}</td>
                <td>{f.label ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}
