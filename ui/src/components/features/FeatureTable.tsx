import { useEffect, useState } from "react";
import type { FeatureTablePage } from "../../api/client";
import { api } from "../../api/client";
import { useView } from "../../hooks";
import { showToken } from "../../state";

const SORTS = [
  ["max_activation", "max activation"],
  ["density", "density"],
  ["mean_activation", "mean activation"],
  ["id", "id"],
] as const;
const LIMIT = 25;

// The feature table: paged, sorted and searched on the server, so a 16k-latent SAE stays fast.
export function FeatureTable({ sae, selected, onSelect }: { sae: string; selected: number | null; onSelect: (id: number) => void }) {
  const [sort, setSort] = useState<string>("max_activation");
  const [descending, setDescending] = useState(true);
  const [search, setSearch] = useState("");
  const [offset, setOffset] = useState(0);
  useEffect(() => setOffset(0), [sae, sort, descending, search]);
  const page = useView<FeatureTablePage>(() => api.featureTable(sae, { offset, limit: LIMIT, sort, descending, search }), [sae, offset, sort, descending, search], 150);
  const total = page.data?.total ?? 0;
  return (
    <div className="feature-table" data-testid="feature-table">
      <div className="row">
        <input data-testid="feature-search" placeholder="search top tokens or labels" value={search} onChange={(e) => setSearch(e.target.value)} aria-label="search features" />
        <select value={sort} onChange={(e) => setSort(e.target.value)} aria-label="sort by" data-testid="feature-sort">
          {SORTS.map(([k, t]) => (
            <option key={k} value={k}>
              {t}
            </option>
          ))}
        </select>
        <button type="button" onClick={() => setDescending((d) => !d)} title="sort order">
          {descending ? "↓" : "↑"}
        </button>
        <span className="muted" data-testid="feature-total">
          {total} features
        </span>
      </div>
      {page.error && <div className="error">{page.error}</div>}
      <table className="numbers ftable">
        <thead>
          <tr>
            <th>id</th>
            <th>density</th>
            <th>mean</th>
            <th>max</th>
            <th className="left">top tokens</th>
            <th className="left">label</th>
          </tr>
        </thead>
        <tbody>
          {page.data?.rows.map((r) => (
            <tr key={r.id} className={r.id === selected ? "sel" : ""} onClick={() => onSelect(r.id)} data-testid="feature-row" data-feature={r.id}>
              <td>{r.id}</td>
              <td>{r.density === null ? "–" : r.density.toExponential(2)}</td>
              <td>{r.mean_activation === null ? "–" : r.mean_activation.toFixed(2)}</td>
              <td>{r.max_activation === null ? "–" : r.max_activation.toFixed(2)}</td>
              <td className="left mono">{r.top_tokens.slice(0, 5).map(showToken).join(" · ")}</td>
              <td className="left">{r.label ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="row">
        <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - LIMIT))}>
          ‹ prev
        </button>
        <span className="muted">
          {total ? `${offset + 1}–${Math.min(offset + LIMIT, total)} of ${total}` : ""}
        </span>
        <button type="button" disabled={offset + LIMIT >= total} onClick={() => setOffset(offset + LIMIT)} data-testid="feature-next-page">
          next ›
        </button>
      </div>
    </div>
  );
}
