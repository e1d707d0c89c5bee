// The workbench's views: one line each. A view is a component that reads the shared session (store.ts) and
// gets the route's extra segments (``#/view/a/b`` → rest = ["a", "b"]). Heavy views can be React.lazy.
import type { ComponentType } from "react";
import { Attack } from "./Attack";
import { Circuit } from "./Circuit";
import { Embeddings } from "./Embeddings";
import { Features } from "./Features";
import { Provenance } from "./Provenance";
import { Workbench } from "./Workbench";

export interface ViewDef {
  id: string;
  title: string;
  component: ComponentType<{ rest: string[] }>;
  /** Views that analyse the shared prompt show the prompt bar; the others (embeddings) do without. */
  usesPrompt: boolean;
}

export const VIEWS: ViewDef[] = [
  { id: "workbench", title: "Workbench", component: Workbench, usesPrompt: true },
  { id: "embeddings", title: "Embeddings", component: Embeddings, usesPrompt: false },
  { id: "attack", title: "Attack", component: Attack, usesPrompt: true },
  { id: "features", title: "Features", component: Features, usesPrompt: true },
  { id: "provenance", title: "Provenance", component: Provenance, usesPrompt: true },
  { id: "circuit", title: "Circuits", component: Circuit, usesPrompt: false },
];
