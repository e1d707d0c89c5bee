// Client state shared by every view (one small Zustand store): the model, the prompt, the active
// interventions and the live next-token run over the WebSocket. Server data that a view alone needs stays in
// that view (TanStack Query or useView).
import { create } from "zustand";
import type { ModelInfo, WsResult } from "./api/client";
import type { Async } from "./hooks";
import { idle } from "./hooks";
import type { Interventions } from "./state";
import { readUrl } from "./state";

export interface Session {
  model: ModelInfo | null;
  modelError: string | null;
  /** The prompt every view analyses (set by Run); "" before the first run. */
  prompt: string;
  iv: Interventions;
  /** The live next-token result for (prompt, iv), kept current by the shell whatever view is open. */
  run: Async<WsResult>;
  connected: boolean;
  setModel: (m: ModelInfo | null, error?: string | null) => void;
  setPrompt: (p: string) => void;
  setIv: (next: Interventions | ((old: Interventions) => Interventions)) => void;
  setRun: (r: Async<WsResult> | ((old: Async<WsResult>) => Async<WsResult>)) => void;
  setConnected: (c: boolean) => void;
}

const initial = readUrl();

export const useSession = create<Session>((set) => ({
  model: null,
  modelError: null,
  prompt: initial.prompt,
  iv: initial.iv,
  run: idle<WsResult>(),
  connected: false,
  setModel: (model, modelError = null) => set({ model, modelError }),
  setPrompt: (prompt) => set({ prompt }),
  setIv: (next) => set((s) => ({ iv: typeof next === "function" ? next(s.iv) : next })),
  setRun: (r) => set((s) => ({ run: typeof r === "function" ? r(s.run) : r })),
  setConnected: (connected) => set({ connected }),
}));
