// The adversarial search's connection (/ws/attack) and its state, in a store of its own: the search keeps
// running while the user switches to other views to inspect the model (its socket closes only when the page
// does, and a closed socket abandons the search on the server).
import { create } from "zustand";
import type { components } from "./api/schema";

type S = components["schemas"];
export type AttackStart = Omit<S["AttackStart"], "type">;
export type AttackStep = S["AttackStep"];
export type AttackStarted = S["AttackStarted"];
export type AttackDone = S["AttackDone"];
type Message = S["AttackStarted"] | S["AttackStep"] | S["AttackDone"] | S["AttackError"];

export type Phase = "idle" | "starting" | "running" | "stopping" | "done" | "error";

export interface AttackState {
  phase: Phase;
  request: AttackStart | null;
  started: AttackStarted | null;
  steps: AttackStep[];
  /** The latest greedy output shown for the best suffix (steps only send it when the suffix changed). */
  output: string | null;
  done: AttackDone | null;
  error: string | null;
  start: (req: AttackStart) => void;
  stop: () => void;
}

let socket: WebSocket | null = null;

function open(onMessage: (m: Message) => void, onClosed: () => void): Promise<WebSocket> {
  if (socket && socket.readyState === WebSocket.OPEN) return Promise.resolve(socket);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws/attack`);
  socket = ws;
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data) as Message);
  ws.onclose = () => {
    if (socket === ws) socket = null;
    onClosed();
  };
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("Cannot open the search connection (/ws/attack)."));
  });
}

export const useAttack = create<AttackState>((set, get) => {
  const onMessage = (m: Message) => {
    if (m.type === "started") set({ phase: get().phase === "stopping" ? "stopping" : "running", started: m });
    else if (m.type === "step")
      set((s) => ({ steps: [...s.steps, m], output: m.output ?? s.output }));
    else if (m.type === "done") set({ phase: "done", done: m, output: m.result.verified_output as string });
    else if (m.type === "error") set({ phase: get().started || get().steps.length ? get().phase : "error", error: m.detail });
  };
  const onClosed = () => {
    const p = get().phase;
    if (p === "starting" || p === "running" || p === "stopping")
      set({ phase: "error", error: "The connection to the server closed; the search was abandoned." });
  };
  return {
    phase: "idle",
    request: null,
    started: null,
    steps: [],
    output: null,
    done: null,
    error: null,
    start: (req) => {
      set({ phase: "starting", request: req, started: null, steps: [], output: null, done: null, error: null });
      open(onMessage, onClosed).then(
        (ws) => ws.send(JSON.stringify({ type: "start", ...req })),
        (e: Error) => set({ phase: "error", error: e.message }),
      );
    },
    stop: () => {
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify({ type: "stop" }));
      set({ phase: "stopping" });
    },
  };
});

/** The run as JSON: the server's final result when there is one, else everything streamed so far. */
export function exportJson(s: AttackState): string {
  if (s.done) return JSON.stringify(s.done.result, null, 1);
  return JSON.stringify({ request: s.request, started: s.started, steps: s.steps, partial: true }, null, 1);
}
