import { useEffect, useMemo, useRef, useState } from "react";
import { ModelClient } from "./client";
import type { Loaded, RunResult, Steering } from "./protocol";

const DEFAULT_PROMPT = "The weather today is";

const show = (t: string) => t.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "␣") || "∅";

declare global {
  interface Window {
    nsweb?: { client: ModelClient; ready: Promise<Loaded> };
  }
}

export function WebApp() {
  const client = useMemo(() => new ModelClient(), []);
  const [info, setInfo] = useState<Loaded | null>(null);
  const [progress, setProgress] = useState("starting the inference worker");
  const [error, setError] = useState<string | null>(null);
  const [prompt, setPrompt] = useState(DEFAULT_PROMPT);
  const [vector, setVector] = useState<string | null>(null);
  const [alpha, setAlpha] = useState(0);
  const [result, setResult] = useState<RunResult | null>(null);
  const [running, setRunning] = useState(false);
  const [generated, setGenerated] = useState("");
  const [generating, setGenerating] = useState(false);
  const [maxNew, setMaxNew] = useState(12);
  const started = useRef(false);

  const steer: Steering = { vector, alpha: vector ? alpha : 0 };

  useEffect(() => {
    if (started.current) return; // StrictMode runs effects twice in development
    started.current = true;
    client.onProgress = setProgress;
    client.onError = setError;
    // the export sits next to this page: the workbench's /web/ or an export folder served as static files
    const ready = client.load(new URL("./", window.location.href).href);
    window.nsweb = { client, ready };
    ready.then(
      (m) => {
        setInfo(m);
        setProgress("");
        if (m.vectors.length) setVector(m.vectors[0].name);
      },
      (e: Error) => setError(e.message),
    );
  }, [client]);

  const runNow = (p = prompt, s = steer) => {
    setRunning(true);
    setError(null);
    client
      .run(p, s)
      .then(setResult, (e: Error) => setError(e.message))
      .finally(() => setRunning(false));
  };

  // the next-token view follows the slider and the prompt (debounced)
  useEffect(() => {
    if (!info) return;
    const t = setTimeout(() => runNow(), 150);
    return () => clearTimeout(t);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [info, vector, alpha]);

  const generate = () => {
    setGenerating(true);
    setGenerated("");
    setError(null);
    client
      .generate(prompt, steer, maxNew, (m) => setGenerated(m.text))
      .then((m) => setGenerated(m.text), (e: Error) => setError(e.message))
      .finally(() => setGenerating(false));
  };

  // log scale: real models carry a massive activation (smollm2: ‖h‖ ≈ 24,000 at the first token vs ≈ 200)
  const maxNorm = result ? Math.log1p(Math.max(...result.norms, ...result.normsPlain, 1e-6)) : 1;
  const width = (x: number) => `${(100 * Math.log1p(x)) / maxNorm}%`;
  const v = info?.validation as Record<string, number | boolean> | null | undefined;

  return (
    <div className="web">
      <header>
        <h1>NeuroScope-Web</h1>
        <p data-testid="web-status" aria-busy={!info && !error}>
          {info ? (
            <>
              <b>{info.model}</b> split after block {info.split} of {info.nLayers} — the vector is added at{" "}
              <code>{info.boundaryHook}</code>. Running in this browser: onnxruntime-web (wasm,{" "}
              <span data-testid="web-threads">{info.threads}</span> thread{info.threads > 1 ? "s" : ""}
              {info.isolated ? ", cross-origin isolated" : ""}
              <span data-testid="web-kv">{info.kvCache ? ", KV cache: one position per generated token" : ""}</span>),{" "}
              {(info.bytes / 2 ** 20).toFixed(0)} MiB loaded and
              verified in {(info.loadMs / 1000).toFixed(1)} s. Nothing leaves the page.
            </>
          ) : error ? (
            "not loaded"
          ) : (
            `Loading… ${progress}`
          )}
        </p>
        {v && (
          <p className="validation" data-testid="web-validation">
            Validated against PyTorch: max |Δ logit| {Number(v.max_logit_diff).toExponential(1)}, greedy agreement{" "}
            {(100 * Number(v.greedy_agreement)).toFixed(0)}%, steering vs <code>Steer</code>{" "}
            {Number(v.steer_max_diff).toExponential(1)}.
          </p>
        )}
      </header>
      {error && (
        <div className="error" role="alert" data-testid="web-error">
          {error}
        </div>
      )}
      <section className="controls">
        <textarea
          data-testid="web-prompt"
          value={prompt}
          rows={3}
          onChange={(e) => setPrompt(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) runNow();
          }}
        />
        <div className="row">
          <button data-testid="web-run" disabled={!info} onClick={() => runNow()}>
            Next token
          </button>
          <label>
            vector{" "}
            <select
              data-testid="web-vector"
              value={vector ?? ""}
              disabled={!info?.vectors.length}
              onChange={(e) => setVector(e.target.value || null)}
            >
              <option value="">(none)</option>
              {info?.vectors.map((x) => (
                <option key={x.name} value={x.name} title={x.note}>
                  {x.name} (layer {x.layer}, norm {x.norm.toFixed(1)})
                </option>
              ))}
            </select>
          </label>
          <label className="slider">
            α{" "}
            <input
              data-testid="web-alpha"
              type="range"
              min={-4}
              max={4}
              step={0.25}
              value={alpha}
              disabled={!vector}
              onChange={(e) => setAlpha(Number(e.target.value))}
            />
            <output data-testid="web-alpha-value">{alpha.toFixed(2)}</output>
          </label>
        </div>
      </section>
      <div className="panels">
        <section className="panel" data-testid="web-next" aria-busy={running}>
          <h2>Next token {result && <small>part A {result.ms.a.toFixed(0)} ms · part B {result.ms.b.toFixed(0)} ms</small>}</h2>
          <table>
            <tbody>
              {result?.top.map((t) => (
                <tr key={t.id} data-testid="web-next-row" data-token-id={t.id} data-prob={t.prob}>
                  <td className="tok">{show(t.token)}</td>
                  <td className="bar">
                    <span style={{ width: `${100 * t.prob}%` }} />
                  </td>
                  <td className="num">{(100 * t.prob).toFixed(2)}%</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
        <section className="panel" data-testid="web-norms">
          <h2>Residual norm at the boundary</h2>
          <p className="hint">‖resid‖ per token at {info?.boundaryHook ?? "the split"}: grey before, blue after the vector (log scale).</p>
          <div className="norms">
            {result?.tokens.map((t, i) => (
              <div key={i} className="normrow" data-testid="web-norm-row" data-token-id={result.ids[i]} data-norm={result.norms[i]} data-norm-plain={result.normsPlain[i]}>
                <span className="tok">{show(t)}</span>
                <span className="normbars">
                  <span className="plain" style={{ width: width(result.normsPlain[i]) }} />
                  <span className="steered" style={{ width: width(result.norms[i]) }} />
                </span>
                <span className="num">{result.norms[i].toFixed(1)}</span>
              </div>
            ))}
          </div>
        </section>
        <section className="panel" data-testid="web-generate-panel">
          <h2>Generate (greedy)</h2>
          <div className="row">
            <button data-testid="web-generate" disabled={!info || generating} onClick={generate}>
              Generate
            </button>
            <label>
              tokens{" "}
              <input type="number" min={1} max={64} value={maxNew} onChange={(e) => setMaxNew(Number(e.target.value))} />
            </label>
          </div>
          <p className="generated" data-testid="web-generated" aria-busy={generating}>
            <span className="prompt">{prompt}</span>
            {generated}
          </p>
        </section>
      </div>
    </div>
  );
}
