// The view lives in the URL's hash (#/view/arg/...), next to the prompt and interventions in the query string,
// so a link or a reload restores both. No router library: a view is one segment plus optional arguments.
import { useSyncExternalStore } from "react";

export interface Route {
  view: string;
  rest: string[];
}

export const DEFAULT_VIEW = "workbench";

function parse(): Route {
  const parts = location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((p) => decodeURIComponent(p));
  return { view: parts[0] || DEFAULT_VIEW, rest: parts.slice(1) };
}

let current: Route | null = null;
let currentHash = "";

function snapshot(): Route {
  if (current === null || currentHash !== location.hash) {
    currentHash = location.hash;
    current = parse();
  }
  return current;
}

function subscribe(onChange: () => void): () => void {
  window.addEventListener("hashchange", onChange);
  return () => window.removeEventListener("hashchange", onChange);
}

/** The current route; re-renders the caller when the hash changes. */
export function useRoute(): Route {
  return useSyncExternalStore(subscribe, snapshot);
}

/** ``#/view/arg…``: for links (keeps the query string, so prompt and interventions travel along). */
export function href(view: string, ...rest: (string | number)[]): string {
  return "#/" + [view, ...rest].map((x) => encodeURIComponent(String(x))).join("/");
}

export function navigate(view: string, ...rest: (string | number)[]): void {
  location.hash = href(view, ...rest).slice(1);
}
