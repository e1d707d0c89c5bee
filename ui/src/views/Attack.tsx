import { useMemo, useState } from "react";
import type { AttackStart } from "../attack";
import { exportJson, useAttack } from "../attack";
import { Panel } from "../components/Panel";
import { Plot } from "../components/Plot";
import { navigate } from "../router";
import { useSession } from "../store";

// Adversarial suffix search on the current prompt: configure, start, watch the loss fall step by step, stop,
// apply the suffix to the prompt (every other view then shows the attacked prompt), export the run.
const METHODS = ["gcg", "genetic", "gradient-free"] as const;

export function Attack() {
  const { prompt, setPrompt } = useSession();
  const a = useAttack();
  const [form, setForm] = useState<AttackStart>({
    prompt: "",
    target: "Sure, I can help with that",
    method: "gcg",
    steps: 100,
    width: 64,
    suffix_len: 20,
    seed: 0,
    topk: 64,
    chat: true,
    max_new_tokens: 24,
  });
  const busy = a.phase === "starting" || a.phase === "running" || a.phase === "stopping";
  const last = a.steps.length ? a.steps[a.steps.length - 1] : null;
  const best = a.done ? (a.done.result.best_suffix as string) : last?.best_suffix ?? a.started?.init_suffix ?? null;
  const applied = a.done ? (a.done.result.rendered_prompt as string) : last?.rendered_prompt ?? null;
  const num = (k: keyof AttackStart) => (e: React.ChangeEvent<HTMLInputElement>) => setForm({ ...form, [k]: Number(e.target.value) });

  const curve = useMemo(
    () => [
      { x: a.steps.map((s) => s.step), y: a.steps.map((s) => s.loss), mode: "lines+markers" as const, name: "step's best" },
      { x: a.steps.map((s) => s.step), y: a.steps.map((s) => s.best_loss), mode: "lines" as const, name: "best so far" },
    ],
    [a.steps],
  );
  const layout = useMemo(() => ({ xaxis: { title: { text: "step" } }, yaxis: { title: { text: "target loss" } }, showlegend: true }), []);

  const download = () => {
    const url = URL.createObjectURL(new Blob([exportJson(a)], { type: "application/json" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `attack-${form.method}-seed${form.seed}.json`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

  return (
    <div className="layout">
      <div className="warning banner wide" role="note" data-testid="attack-warning">
        <strong>Adversarial search.</strong> This panel searches for a suffix that makes the model start its answer with a
        chosen target: a red-teaming and interpretability tool for models you are allowed to test. Suffixes are shown
        verbatim and may be gibberish or offensive; a success is only claimed after the prompt with the suffix is
        re-tokenised and decoded greedily. One search runs per server, behind live clicks.
      </div>
      <Panel title="Search" testid="attack-panel" loading={busy} error={a.phase === "error" ? a.error : null} wide>
        {!prompt ? (
          <p className="muted">Run a prompt first: the search appends its suffix to the current prompt.</p>
        ) : (
          <>
            <p className="hint" data-testid="attack-prompt">
              Prompt: <code>{prompt}</code>
            </p>
            <form
              className="inline-form"
              onSubmit={(e) => {
                e.preventDefault();
                a.start({ ...form, prompt });
              }}
            >
              <label>
                target <input data-testid="attack-target" value={form.target} onChange={(e) => setForm({ ...form, target: e.target.value })} size={30} />
              </label>
              <label>
                method{" "}
                <select data-testid="attack-method" value={form.method} onChange={(e) => setForm({ ...form, method: e.target.value as AttackStart["method"] })}>
                  {METHODS.map((m) => (
                    <option key={m}>{m}</option>
                  ))}
                </select>
              </label>
              <label>
                steps <input data-testid="attack-steps" type="number" min={1} value={form.steps} onChange={num("steps")} style={{ width: 60 }} />
              </label>
              <label>
                {form.method === "genetic" ? "population" : "width"} <input data-testid="attack-width" type="number" min={1} value={form.width} onChange={num("width")} style={{ width: 60 }} />
              </label>
              <label>
                suffix tokens <input data-testid="attack-suffix-len" type="number" min={1} max={100} value={form.suffix_len} onChange={num("suffix_len")} style={{ width: 50 }} />
              </label>
              <label>
                seed <input data-testid="attack-seed" type="number" min={0} value={form.seed} onChange={num("seed")} style={{ width: 50 }} />
              </label>
              <label>
                <input type="checkbox" data-testid="attack-chat" checked={form.chat ?? true} onChange={(e) => setForm({ ...form, chat: e.target.checked })} /> chat template
              </label>
              <button type="submit" data-testid="attack-start" disabled={busy}>
                Start
              </button>
              <button type="button" data-testid="attack-stop" disabled={!busy} onClick={a.stop}>
                Stop
              </button>
              <button type="button" data-testid="attack-export" disabled={!a.steps.length && !a.done} onClick={download}>
                Export JSON
              </button>
            </form>
            {a.phase !== "error" && a.error && (
              <div className="error" role="alert" data-testid="attack-message">
                {a.error}
              </div>
            )}
          </>
        )}
      </Panel>
      <Panel title="Loss per step" testid="attack-curve-panel" wide>
        <Plot data={curve} layout={layout} testid="attack-loss-curve" height={260} />
        <p className="hint" data-testid="attack-status" data-phase={a.phase} data-steps={a.steps.length}>
          {a.phase === "idle" && "Not started."}
          {a.phase === "starting" && "Preparing (prefix cache, first gradient)…"}
          {(a.phase === "running" || a.phase === "stopping") &&
            `Step ${last?.step ?? 0} of ${a.request?.steps}: loss ${last ? last.loss.toFixed(3) : "…"} (best ${last ? last.best_loss.toFixed(3) : "…"}), ${last ? last.seconds.toFixed(1) : "…"} s${a.phase === "stopping" ? "; stopping…" : ""}`}
          {a.phase === "done" &&
            `${a.done?.reason === "success" ? `Verified success at step ${a.done.result.success_step}` : a.done?.reason === "stopped" ? "Stopped" : "Budget used up without a verified success"} after ${a.done?.result.steps} steps, ${(a.done?.result.seconds as number)?.toFixed(1)} s.`}
        </p>
      </Panel>
      <Panel
        title="Best suffix and the model's greedy answer"
        testid="attack-best-panel"
        wide
        extra={
          <button
            type="button"
            data-testid="attack-apply"
            disabled={!applied}
            onClick={() => {
              if (!applied) return;
              setPrompt(applied);
              navigate("workbench");
            }}
          >
            Apply suffix to the prompt
          </button>
        }
      >
        {best === null ? (
          <p className="muted">No search yet.</p>
        ) : (
          <>
            <p>
              suffix: <code data-testid="attack-best-suffix">{best}</code>
            </p>
            <p>
              greedy answer: <code data-testid="attack-output" data-success={a.done?.result.success ? "true" : "false"}>{a.output ?? "…"}</code>
            </p>
            {a.done && (
              <p className="hint" data-testid="attack-verdict">
                {a.done.result.success
                  ? `Starts with the target “${a.done.result.target as string}”: verified by decoding the re-tokenised prompt.`
                  : "Does not start with the target."}
              </p>
            )}
          </>
        )}
      </Panel>
    </div>
  );
}
