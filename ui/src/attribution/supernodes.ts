// Supernodes on the client: a named group of graph nodes drawn as one. Grouping is presentation only: the
// server's graph is unchanged, the drawn document merges each group's members into one node (attribution
// summed, placed at its members' mean band and position) and sums the edges between groups. Interventions on a
// supernode name its members, so the numbers always come from the server's nodes.
import type { Supernode } from "../api/attribution";
import type { GraphDoc } from "../api/client";
import type { DrawDoc, DrawNode } from "../components/GraphView";

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** Supernodes restricted to the nodes the (re-pruned) graph still has; groups left with no member vanish. */
export function liveGroups(doc: GraphDoc, groups: Supernode[]): Supernode[] {
  const ids = new Set(doc.nodes.map((n) => n.id));
  return groups.map((g) => ({ ...g, members: g.members.filter((m) => ids.has(m)) })).filter((g) => g.members.length > 0);
}

/** The document to draw: each group's members replaced by one supernode. */
export function collapse(doc: GraphDoc, groups: Supernode[]): DrawDoc {
  const live = liveGroups(doc, groups);
  const owner = new Map<string, string>();
  for (const g of live) for (const m of g.members) owner.set(m, g.id);
  const byId = new Map(doc.nodes.map((n) => [n.id, n]));
  const supers: DrawNode[] = live.map((g) => {
    const ms = g.members.map((m) => byId.get(m)!);
    const pos = ms.map((n) => n.pos).filter((p): p is number => p != null);
    return {
      id: g.id,
      type: "supernode",
      label: g.name,
      band: mean(ms.map((n) => n.band)),
      layer: null,
      pos: pos.length ? Math.round(mean(pos)) : null,
      attribution: ms.reduce((a, n) => a + Math.abs(n.attribution ?? 0), 0),
      top_tokens: [],
      members: [...g.members],
    };
  });
  const nodes: DrawNode[] = [...doc.nodes.filter((n) => !owner.has(n.id)), ...supers];
  const summed = new Map<string, { source: string; target: string; weight: number; path: string }>();
  for (const e of doc.edges) {
    const s = owner.get(e.source) ?? e.source;
    const t = owner.get(e.target) ?? e.target;
    if (s === t) continue; // inside one supernode
    const key = `${s}\u0000${t}`;
    const old = summed.get(key);
    if (old) old.weight += e.weight;
    else summed.set(key, { source: s, target: t, weight: e.weight, path: s === e.source && t === e.target ? e.path : "supernode" });
  }
  return { ...doc, nodes, edges: [...summed.values()] };
}

/** A new supernode from the selected drawn ids (a selected supernode brings its members along). */
export function group(groups: Supernode[], selected: string[], name?: string): Supernode[] {
  const chosen = new Set(selected);
  const members: string[] = [];
  const rest: Supernode[] = [];
  for (const g of groups) {
    if (chosen.has(g.id)) members.push(...g.members);
    else rest.push(g);
  }
  for (const id of selected) if (!groups.some((g) => g.id === id)) members.push(id);
  // a node belongs to one group at most: take the members out of any other group
  const taken = new Set(members);
  const others = rest.map((g) => ({ ...g, members: g.members.filter((m) => !taken.has(m)) })).filter((g) => g.members.length);
  return [...others, { id: nextId([...groups, ...others]), name: name || `group ${others.length + 1}`, members: [...taken] }];
}

export const ungroup = (groups: Supernode[], id: string): Supernode[] => groups.filter((g) => g.id !== id);

export const rename = (groups: Supernode[], id: string, name: string): Supernode[] => groups.map((g) => (g.id === id ? { ...g, name } : g));

/** The server's id scheme (``sn0``, ``sn1``…), skipping ids in use. */
function nextId(groups: Supernode[]): string {
  const used = new Set(groups.map((g) => g.id));
  let i = groups.length;
  while (used.has(`sn${i}`)) i += 1;
  return `sn${i}`;
}
