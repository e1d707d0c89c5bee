// The view lives in the URL (prompt + interventions), so a link or a reload restores it.
import type { InterventionSpec } from "./api/client";

export type Pair = [number, number];
export interface Interventions {
  heads: Pair[];
  neurons: Pair[];
  mlps: number[];
  steer: { vector: string; layer: number | null; alpha: number } | null;
}

export const empty = (): Interventions => ({ heads: [], neurons: [], mlps: [], steer: null });

export function toSpec(iv: Interventions): InterventionSpec {
  return { heads: iv.heads, neurons: iv.neurons, mlps: iv.mlps, steer: iv.steer };
}

export function isEmpty(iv: Interventions): boolean {
  return !iv.heads.length && !iv.neurons.length && !iv.mlps.length && !iv.steer;
}

const pairs = (s: string | null): Pair[] =>
  (s ?? "")
    .split(",")
    .map((x) => x.split(".").map(Number))
    .filter((p) => p.length === 2 && p.every((n) => Number.isInteger(n) && n >= 0)) as Pair[];

export function readUrl(): { prompt: string; iv: Interventions } {
  const q = new URLSearchParams(location.search);
  const iv = empty();
  iv.heads = pairs(q.get("heads"));
  iv.neurons = pairs(q.get("neurons"));
  iv.mlps = (q.get("mlps") ?? "")
    .split(",")
    .filter((x) => x !== "")
    .map(Number)
    .filter((n) => Number.isInteger(n) && n >= 0);
  const steer = q.get("steer"); // name@layer:alpha
  const m = steer?.match(/^(.+)@(\d*):(-?[\d.]+)$/);
  if (m) iv.steer = { vector: m[1], layer: m[2] === "" ? null : Number(m[2]), alpha: Number(m[3]) };
  return { prompt: q.get("prompt") ?? "", iv };
}

export function writeUrl(prompt: string, iv: Interventions) {
  const q = new URLSearchParams();
  if (prompt) q.set("prompt", prompt);
  if (iv.heads.length) q.set("heads", iv.heads.map((p) => p.join(".")).join(","));
  if (iv.neurons.length) q.set("neurons", iv.neurons.map((p) => p.join(".")).join(","));
  if (iv.mlps.length) q.set("mlps", iv.mlps.join(","));
  if (iv.steer) q.set("steer", `${iv.steer.vector}@${iv.steer.layer ?? ""}:${iv.steer.alpha}`);
  const s = q.toString();
  // keep the hash: it names the open view (router.ts)
  history.replaceState(null, "", (s ? `?${s}` : location.pathname) + location.hash);
}

export function toggle(list: Pair[], p: Pair): Pair[] {
  return list.some((x) => x[0] === p[0] && x[1] === p[1])
    ? list.filter((x) => !(x[0] === p[0] && x[1] === p[1]))
    : [...list, p].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

export const has = (list: Pair[], p: Pair) => list.some((x) => x[0] === p[0] && x[1] === p[1]);

/** Make whitespace and control characters in a token visible. */
export function showToken(t: string): string {
  return t.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "␣") || "∅";
}
