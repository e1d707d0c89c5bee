import { showToken } from "../state";

// A feature's stored statistics (density, top tokens, logit effects, top contexts), as the provenance and
// attribution graphs show them for a clicked feature node. One rendering for every feature store.
export interface StoredFeature {
  has_store: boolean;
  density?: number | null;
  mean_activation?: number | null;
  max_activation?: number | null;
  top_tokens?: string[];
  logit_top_tokens?: string[];
  logit_bottom_tokens?: string[];
  contexts?: { tokens: string[]; center: number; activation: number }[];
}

export function FeatureStore({ d, missing }: { d: StoredFeature; missing: string }) {
  const promotes = d.logit_top_tokens ?? [];
  const suppresses = d.logit_bottom_tokens ?? [];
  const logits = (
    <p className="mono" data-testid="feature-logits">
      promotes: {promotes.slice(0, 8).map(showToken).join(" ")}
      {suppresses.length > 0 && <> · suppresses: {suppresses.slice(0, 8).map(showToken).join(" ")}</>}
    </p>
  );
  // without a store, what the decoder says (logit effects) can still be shown
  if (!d.has_store)
    return (
      <>
        {promotes.length > 0 && logits}
        <p className="hint" data-testid="feature-no-store">
          {missing}
        </p>
      </>
    );
  return (
    <>
      <p className="mono" data-testid="feature-density">
        density {(d.density ?? 0).toFixed(4)} · mean {(d.mean_activation ?? 0).toFixed(3)} · max {(d.max_activation ?? 0).toFixed(3)}
      </p>
      <p className="mono" data-testid="feature-top-tokens">
        top tokens: {(d.top_tokens ?? []).map(showToken).join(" ")}
      </p>
      {logits}
      <div className="contexts" data-testid="feature-contexts">
        {(d.contexts ?? []).map((c, i) => (
          <div key={i} className="mono context">
            {c.tokens.map((t, j) => (
              <span key={j} className={j === c.center ? "hit" : ""}>
                {showToken(t)}
              </span>
            ))}{" "}
            <span className="muted">{c.activation.toFixed(2)}</span>
          </div>
        ))}
      </div>
    </>
  );
}
