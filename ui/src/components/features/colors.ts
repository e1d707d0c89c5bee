// Activation → background colour (orange, alpha by the activation relative to the feature's max).
export function actColor(v: number, max: number): string {
  if (!(v > 0) || !(max > 0)) return "transparent";
  const a = Math.min(1, v / max);
  return `rgba(224, 138, 44, ${(0.12 + 0.78 * a).toFixed(3)})`;
}
