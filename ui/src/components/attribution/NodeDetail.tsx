import { useQuery } from "@tanstack/react-query";
import { attributionApi } from "../../api/attribution";
import { showToken } from "../../state";
import { FeatureStore } from "../FeatureStore";
import type { DrawNode } from "../GraphView";

// A clicked node of an attribution graph: a transcoder feature opens its detail (top contexts, density, logit
// effects from the transcoders' feature store); other nodes show their numbers.
export function AttributionNodeDetail({ node, tokens }: { node: DrawNode; tokens: string[] }) {
  const isFeature = node.type === "feature" && node.layer != null && node.feature != null;
  const feature = useQuery({
    queryKey: ["attribution", "feature", node.layer, node.feature],
    queryFn: () => attributionApi.feature(node.layer!, node.feature!),
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
      {feature.data && <FeatureStore d={feature.data} missing="No feature store for these transcoders: densities and top contexts come with one (logit effects above are from the decoder)." />}
    </div>
  );
}
