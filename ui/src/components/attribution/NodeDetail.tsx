import { useQuery } from "@tanstack/react-query";
import type { FeatureInfo } from "../../api/attribution";
import { attributionApi } from "../../api/attribution";
import { showToken } from "../../state";
import { FeatureStore } from "../FeatureStore";
import type { DrawNode } from "../GraphView";

// A clicked node of an attribution graph: a transcoder feature opens its detail (top contexts, density, logit
// effects from the transcoders' feature store); other nodes show their numbers.
export function AttributionNodeDetail({ node, tokens, graphId }: { node: DrawNode; tokens: string[]; graphId: string }) {
  const isFeature = node.type === "feature" && node.layer != null && node.feature != null;
  const feature = useQuery({
    queryKey: ["attribution", "feature", node.layer, node.feature, graphId],
    queryFn: () => attributionApi.feature(node.layer!, node.feature!, graphId),
    enabled: isFeature,
    retry: false,
  });
  const where = node.pos != null ? ` at position ${node.pos} (${showToken(tokens[node.pos] ?? "")})` : "";
  return (
    <div data-testid={isFeature ? "attr-feature-detail" : "attr-other-detail"}>
      <p className="mono">
        {node.type === "supernode" ? `supernode of ${node.members?.length ?? 0} nodes` : node.type}
        {isFeature && ` L${node.layer} #${node.feature}`}
        {where}
      </p>
      <p className="hint mono">
        {node.activation != null && `activation ${node.activation.toPrecision(4)} · `}
        influence {(node.attribution ?? 0).toPrecision(3)}
      </p>
      {feature.error && (
        <div className="error" data-testid="attr-feature-error">
          {(feature.error as Error).message}
        </div>
      )}
      {feature.data && <FeatureStore d={stored(feature.data)} missing="No feature store for these transcoders (train-transcoders --features writes one): densities and top contexts come with it." />}
      {feature.data?.activations && <Activations tokens={feature.data.tokens ?? []} acts={feature.data.activations} />}
    </div>
  );
}

/** The route's detail in the shape every feature store is shown in (logit effects as token lists). */
const stored = (d: FeatureInfo) => ({ ...d, logit_top_tokens: d.promoted.map((t) => t.token), logit_bottom_tokens: d.suppressed.map((t) => t.token) });

/** The feature's activation at each position of the graph's prompt. */
function Activations({ tokens, acts }: { tokens: string[]; acts: number[] }) {
  const hi = Math.max(...acts, 1e-9);
  return (
    <p className="mono context" data-testid="feature-activations">
      {tokens.map((t, i) => (
        <span key={i} title={acts[i].toFixed(3)} style={{ background: acts[i] > 0 ? `rgba(224,138,44,${(0.15 + 0.85 * acts[i] / hi).toFixed(2)})` : undefined }}>
          {showToken(t)}
        </span>
      ))}
    </p>
  );
}
