import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef } from "react";
import type { PrepareStatus } from "../api/client";
import { api } from "../api/client";

const ACTIVE = new Set(["checking", "waiting", "running"]);

// The default SAE suite the server prepares on its first start for a model (GET /api/prepare), polled while it
// runs. When it becomes ready the queries that read SAEs refetch, so the views fill in without a reload.
export function usePrepare(): PrepareStatus | undefined {
  const client = useQueryClient();
  const q = useQuery({
    queryKey: ["prepare"],
    queryFn: api.prepare,
    refetchInterval: (query) => (query.state.data && !ACTIVE.has(query.state.data.state) ? false : 1500),
    retry: false,
  });
  const state = q.data?.state;
  const before = useRef(state);
  useEffect(() => {
    if (before.current && before.current !== state && state === "ready") {
      client.invalidateQueries({ queryKey: ["graphs", "suite"] });
      client.invalidateQueries({ queryKey: ["saes"] });
    }
    before.current = state;
  }, [state, client]);
  return q.data;
}

// A progress bar and stage line while preparing, the reason when it failed; nothing when off or ready.
export function PrepareBanner({ status, what }: { status: PrepareStatus | undefined; what: string }) {
  if (!status || status.state === "off" || status.state === "ready") return null;
  if (status.state === "failed")
    return (
      <div className="error" role="alert" data-testid="prepare-failed">
        The default SAE suite could not be prepared: {status.message}
      </div>
    );
  const pct = Math.round(100 * (status.fraction ?? 0));
  const stage = status.state === "checking" ? "looking for a cached suite" : status.state === "waiting" ? `waiting for another server${status.stage ? ` (${status.stage})` : ""}` : status.stage ?? "starting";
  return (
    <div className="prepare" data-testid="prepare-progress" role="status">
      <div>
        Preparing the default SAE suite for this model (layers {(status.layers ?? []).join(", ")}; once, then cached): {what}
      </div>
      <div className="prepare-bar" aria-label="preparation progress">
        <div style={{ width: `${pct}%` }} />
      </div>
      <div className="hint" data-testid="prepare-stage">
        {pct}% · {stage} · {Math.round(status.elapsed_s ?? 0)} s
      </div>
      {(status.notices ?? []).map((n) => (
        <div className="hint" key={n}>
          {n}
        </div>
      ))}
    </div>
  );
}
