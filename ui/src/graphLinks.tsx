// "Open provenance": a link any view can put next to a feature (the provenance view reads the prompt from the
// session, so the link carries only where to start).
import { href } from "./router";

export function provenanceHref(layer: number, feature: number, position = -1, depth = 2): string {
  return href("provenance", layer, feature, position, depth);
}

export function OpenProvenance(props: { layer: number; feature: number; position?: number; depth?: number; label?: string }) {
  return (
    <a className="link" href={provenanceHref(props.layer, props.feature, props.position ?? -1, props.depth ?? 2)} data-testid={`open-provenance-${props.layer}-${props.feature}`}>
      {props.label ?? "open provenance"}
    </a>
  );
}

/** Where a feature's detail lives in the Features view (branch "features"), for when it is there. */
export function featureViewHref(layer: number, feature: number): string {
  return href("features", `L${layer}`, feature);
}
