import { useEffect, useMemo, useState } from "react";
import type { FeatureDetail as Detail, PromptActs } from "../../api/client";
import { api } from "../../api/client";
import { useView } from "../../hooks";
import { isEmpty, showToken } from "../../state";
import { useSession } from "../../store";
import { NextToken } from "../NextToken";
import { Panel } from "../Panel";
import { Bars } from "./Bars";
import { actColor } from "./colors";

function Tok({ t, act, max, hl, onHover, onClick, testid, active }: { t: string; act: number; max: number; hl: string | null; onHover: (t: string | null) => void; onClick?: () => void; testid: string; active?: boolean }) {
  return (
    <span
      className={`ftok${hl !== null && t === hl ? " hl" : ""}${active ? " picked" : ""}`}
      style={{ background: actColor(act, max) }}
      title={`${JSON.stringify(t)}: ${act.toFixed(3)}`}
      data-testid={testid}
      data-token={t}
      data-act={act}
      onMouseEnter={() => onHover(t)}
      onMouseLeave={() => onHover(null)}
      onClick={onClick}
    >
      {showToken(t)}
    </span>
  );
}

// Everything about one feature: contexts, token cloud, decoder logits, density, the prompt, and the patch.
export function FeatureDetail({ sae, id, onOpen }: { sae: string; id: number; onOpen: (id: number) => void }) {
  const { prompt, iv, setIv, run } = useSession();
  const detail = useView<Detail>(() => api.feature(sae, id), [sae, id]);
  const [hover, setHover] = useState<string | null>(null);
  const [position, setPosition] = useState<number | null>(null);
  const [label, setLabel] = useState("");
  const [labelMsg, setLabelMsg] = useState<string | null>(null);
  const [method, setMethod] = useState<"ablate" | "clamp">("ablate");
  const [value, setValue] = useState(10);
  const [patchName, setPatchName] = useState<string | null>(null);
  const [patchError, setPatchError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => setLabel(detail.data?.label ?? ""), [detail.data]);
  // Prepare the ablate edit as soon as the feature opens (build the closed form, attach the adapter), so the
  // toggle itself only switches this client's adapter: one forward, no build.
  const [prepared, setPrepared] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    api.prepareEdit({ sae, features: [id], method: "ablate", value: null, rank: 8 }).then(
      (e) => live && setPrepared(e.name),
      () => undefined, // the toggle prepares (and reports errors) itself
    );
    return () => {
      live = false;
    };
  }, [sae, id]);
  useEffect(() => setPosition(null), [prompt]);
  const acts = useView<PromptActs>(prompt ? () => api.promptActs(sae, { prompt, feature: id, position, k: 20 }) : null, [sae, id, prompt, position]);

  const max = detail.data?.stats?.max_activation ?? Math.max(1e-6, ...(detail.data?.contexts ?? []).flatMap((c) => c.acts));
  const cloudMax = Math.max(1e-9, ...(detail.data?.cloud ?? []).map((c) => c.weight));
  const patched = patchName !== null && iv.edits.includes(patchName);

  async function togglePatch() {
    setPatchError(null);
    if (patched) {
      setIv((old) => ({ ...old, edits: old.edits.filter((e) => e !== patchName) }));
      return;
    }
    if (method === "ablate" && prepared) {
      setPatchName(prepared);
      setIv((old) => ({ ...old, edits: old.edits.includes(prepared) ? old.edits : [...old.edits, prepared] }));
      return;
    }
    setBusy(true);
    try {
      const e = await api.prepareEdit({ sae, features: [id], method, value: method === "clamp" ? value : null, rank: 8 });
      setPatchName(e.name);
      setIv((old) => ({ ...old, edits: old.edits.includes(e.name) ? old.edits : [...old.edits, e.name] }));
    } catch (err) {
      setPatchError((err as Error).message);
    } finally {
      setBusy(false);
    }
  }

  async function saveLabel() {
    try {
      const r = await api.setLabel(sae, id, label);
      setLabelMsg(r.label ? "saved" : "label removed");
    } catch (err) {
      setLabelMsg((err as Error).message);
    }
  }

  const effect = useMemo(() => {
    const top = run.data?.top ?? [];
    return [...top].sort((a, b) => Math.abs(b.delta_logit) - Math.abs(a.delta_logit)).slice(0, 10).map((t) => ({ token: t.token, value: t.delta_logit }));
  }, [run.data]);

  const d = detail.data;
  return (
    <div className="fdetail" data-testid="feature-detail" data-feature={id}>
      <Panel title={`Feature ${id}`} testid="feature-summary" loading={detail.loading} error={detail.error} wide>
        {d && (
          <>
            <div className="row">
              <label>
                label <input data-testid="feature-label" value={label} maxLength={200} onChange={(e) => setLabel(e.target.value)} />
              </label>
              <button type="button" onClick={saveLabel} data-testid="save-label">
                save
              </button>
              {labelMsg && <span className="muted">{labelMsg}</span>}
              {d.stats && (
                <span className="muted">
                  density {d.stats.density.toExponential(2)} · mean {d.stats.mean_activation.toFixed(2)} · max {d.stats.max_activation.toFixed(2)} · {d.hook}
                </span>
              )}
            </div>
            <div className="row patch">
              <select value={method} onChange={(e) => setMethod(e.target.value as "ablate" | "clamp")} aria-label="patch method" data-testid="patch-method" disabled={patched}>
                <option value="ablate">ablate (closed-form LoRA)</option>
                <option value="clamp">clamp where it fires (hooked)</option>
              </select>
              {method === "clamp" && (
                <label>
                  value <input type="number" step="any" value={value} onChange={(e) => setValue(+e.target.value)} disabled={patched} />
                </label>
              )}
              <button type="button" className={patched ? "on" : ""} aria-pressed={patched} onClick={togglePatch} disabled={busy} data-testid="patch-toggle">
                {busy ? "preparing…" : patched ? "patched ✓ (click to remove)" : "patch this feature"}
              </button>
              {patchName && <span className="muted mono">{patchName}</span>}
              {patchError && <span className="error">{patchError}</span>}
            </div>
          </>
        )}
      </Panel>
      <Panel title="Next token (this client's edits)" testid="feature-next-token" loading={run.loading}>
        {run.data ? <NextToken run={run.data} intervened={!isEmpty(iv)} /> : <p className="muted">Type a prompt and press Run.</p>}
      </Panel>
      <Panel title="Patch effect: Δ logit of the top next tokens" testid="patch-effect">
        {effect.length && !isEmpty(iv) ? <Bars rows={effect} testid="patch-effect-bars" /> : <p className="muted">No active edits.</p>}
      </Panel>
      <Panel title="Token cloud (hover a word)" testid="token-cloud">
        <div className="cloud">
          {d?.cloud.map((c, i) => (
            <span
              key={i}
              className={`cloud-word${hover === c.token ? " hl" : ""}`}
              style={{ fontSize: `${11 + 20 * Math.sqrt(c.weight / cloudMax)}px` }}
              data-testid="cloud-word"
              data-token={c.token}
              onMouseEnter={() => setHover(c.token)}
              onMouseLeave={() => setHover(null)}
            >
              {showToken(c.token)}
            </span>
          ))}
          {d && d.cloud.length === 0 && <span className="muted">no feature store attached</span>}
        </div>
      </Panel>
      <Panel title="Decoder direction through the unembedding" testid="feature-logits">
        {d && (
          <div className="two">
            <div>
              <h3>promotes</h3>
              <Bars rows={d.logits.promoted} testid="logits-promoted" />
            </div>
            <div>
              <h3>suppresses</h3>
              <Bars rows={d.logits.suppressed} testid="logits-suppressed" />
            </div>
          </div>
        )}
      </Panel>
      <Panel title="Top-activating contexts" testid="feature-contexts" wide>
        {d?.contexts.map((c, i) => (
          <div key={i} className="context" data-testid="context">
            <span className="mono muted act">{c.activation.toFixed(2)}</span>
            {c.tokens.map((t, j) => (
              <Tok key={j} t={t} act={c.acts[j] ?? 0} max={max} hl={hover} onHover={setHover} testid="context-token" active={j === c.center} />
            ))}
          </div>
        ))}
        {d && d.contexts.length === 0 && <p className="muted">No stored contexts (compute them with `neuroscope sae-features`).</p>}
        <p className="hint">Colour: this feature's activation on each token (windows re-run behind the start token); the outlined token is where the recorded activation (left) was taken.</p>
      </Panel>
      <Panel title="On the current prompt (click a token for the features active there)" testid="feature-prompt" loading={acts.loading} error={acts.error} wide>
        {acts.data && (
          <>
            <div className="context">
              {acts.data.tokens.map((t, j) => (
                <Tok key={j} t={t} act={acts.data!.acts?.[j] ?? 0} max={max} hl={hover} onHover={setHover} onClick={() => setPosition(j)} testid="prompt-token" active={j === position} />
              ))}
            </div>
            {acts.data.active && (
              <table className="numbers" data-testid="active-features">
                <thead>
                  <tr>
                    <th>feature</th>
                    <th>activation</th>
                    <th className="left">top tokens</th>
                    <th className="left">label</th>
                  </tr>
                </thead>
                <tbody>
                  {acts.data.active.map((a) => (
                    <tr key={a.feature} onClick={() => onOpen(a.feature)} className="clickable" data-testid="active-feature" data-feature={a.feature}>
                      <td>{a.feature}</td>
                      <td>{a.activation.toFixed(3)}</td>
                      <td className="left mono">{a.top_tokens.map(showToken).join(" · ")}</td>
                      <td className="left">{a.label ?? ""}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </>
        )}
        {!prompt && <p className="muted">Type a prompt and press Run.</p>}
      </Panel>
      <Panel title="Density (log10, all features)" testid="feature-histogram">
        {d?.histogram && (
          <svg viewBox="0 0 300 110" className="hist" data-testid="density-histogram">
            {d.histogram.counts.map((c, i) => {
              const h = d.histogram!;
              const top = Math.max(...h.counts, 1);
              const w = 300 / h.counts.length;
              const bh = (90 * c) / top;
              return <rect key={i} x={i * w + 0.5} y={95 - bh} width={w - 1} height={bh} fill={i === h.bin ? "#e08a2c" : "#9fb3d9"} data-own={i === h.bin ? "1" : undefined} />;
            })}
            <text x="0" y="108" fontSize="9">
              {d.histogram.edges[0].toFixed(1)}
            </text>
            <text x="300" y="108" fontSize="9" textAnchor="end">
              {d.histogram.edges[d.histogram.edges.length - 1].toFixed(1)}
            </text>
          </svg>
        )}
        {d?.histogram && <p className="hint">This feature (orange bin): density {d.histogram.density.toExponential(2)}; {d.histogram.dead} dead features not shown.</p>}
      </Panel>
    </div>
  );
}
