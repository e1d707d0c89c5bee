import type { Supernode } from "../../api/attribution";

// The supernodes drawn in the graph: group the picked nodes (shift-click in the graph), rename, ungroup, or
// start from the server's automatic grouping (by role in the graph and decoder similarity).
export function SupernodePanel(props: {
  groups: Supernode[];
  picked: number;
  onGroup: () => void;
  onRename: (id: string, name: string) => void;
  onUngroup: (id: string) => void;
  onAuto?: () => void;
  autoBusy?: boolean;
}) {
  const { groups } = props;
  return (
    <div data-testid="supernodes">
      <div className="row">
        <button type="button" onClick={props.onGroup} disabled={props.picked < 2} data-testid="supernode-group">
          group picked ({props.picked})
        </button>
        {props.onAuto && (
          <button type="button" onClick={props.onAuto} disabled={props.autoBusy} data-testid="supernode-auto">
            {props.autoBusy ? "grouping…" : "automatic supernodes"}
          </button>
        )}
      </div>
      {groups.length === 0 && <p className="hint">Shift-click two or more features in the graph to pick them, then group them.</p>}
      {groups.map((g) => (
        <div key={g.id} className="supernode-row" data-testid="supernode-row" data-id={g.id}>
          <input aria-label="supernode name" value={g.name} maxLength={80} onChange={(e) => props.onRename(g.id, e.target.value)} data-testid="supernode-name" />
          <span className="hint">{g.members.length} nodes</span>
          <button type="button" onClick={() => props.onUngroup(g.id)} data-testid="supernode-ungroup">
            ungroup
          </button>
        </div>
      ))}
    </div>
  );
}
