import { useQuery } from "@tanstack/react-query";
import { useCallback, useMemo, useState } from "react";
import type { EmbeddingMap } from "../api/client";
import { api } from "../api/client";
import { Panel } from "../components/Panel";
import { Plot } from "../components/Plot";
import { navigate } from "../router";
import { showToken } from "../state";

// The embedding explorer: typed words as points in 3D (the library's PCA of their embedding vectors), coloured
// by similarity cluster; click a point for its nearest tokens; a − b + c analogies with the expected answer's rank.
const DEFAULT_WORDS = "king queen man woman";
const PALETTE = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#999999", "#dede00"];
type Matrix = "W_E" | "W_U";

const splitWords = (text: string) => text.split(/[\s,]+/).filter(Boolean);

export function Embeddings({ rest }: { rest: string[] }) {
  const fromUrl = rest[0] ?? DEFAULT_WORDS;
  const [draft, setDraft] = useState(fromUrl);
  const [matrix, setMatrix] = useState<Matrix>("W_E");
  const [picked, setPicked] = useState<string | null>(null);
  const [analogyForm, setAnalogyForm] = useState({ a: "king", b: "man", c: "woman", expected: "queen" });
  const [analogyAsked, setAnalogyAsked] = useState(analogyForm);
  const words = useMemo(() => splitWords(fromUrl), [fromUrl]);

  const map = useQuery({
    queryKey: ["embeddings", "map", words, matrix],
    queryFn: () => api.embeddingMap({ words, matrix }),
    enabled: words.length >= 2,
  });
  const neighbours = useQuery({
    queryKey: ["embeddings", "neighbours", picked, matrix],
    queryFn: () => api.neighbours({ word: picked!, k: 12, matrix }),
    enabled: picked !== null,
  });
  const analogy = useQuery({
    queryKey: ["embeddings", "analogy", analogyAsked, matrix],
    queryFn: () => api.analogy({ ...analogyAsked, expected: analogyAsked.expected || null, k: 10, matrix }),
  });

  const show = () => {
    const next = splitWords(draft);
    setPicked(null);
    navigate("embeddings", next.join(" "));
  };

  return (
    <div className="layout">
      <Panel title="Words in embedding space (PCA, 3D)" testid="embedding-panel" loading={map.isFetching} error={map.error ? (map.error as Error).message : words.length < 2 ? "Type at least two words." : null} wide>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            show();
          }}
        >
          <input data-testid="embedding-words" aria-label="words" value={draft} onChange={(e) => setDraft(e.target.value)} size={60} />
          <label>
            vectors{" "}
            <select data-testid="embedding-matrix" value={matrix} onChange={(e) => setMatrix(e.target.value as Matrix)}>
              <option value="W_E">embedding W_E</option>
              <option value="W_U">unembedding W_U</option>
            </select>
          </label>
          <button type="submit" data-testid="embedding-show">
            Show
          </button>
        </form>
        {map.data && <Scatter map={map.data} picked={picked} onPick={setPicked} analogy={analogyAsked} />}
        {map.data && (
          <div className="word-chips" aria-label="words on the map">
            {map.data.words.map((w, i) => (
              <button type="button" key={w.text} data-testid="word-chip" data-cluster={map.data.clusters[i]} className={w.text === picked ? "picked" : ""} style={{ borderColor: PALETTE[map.data.clusters[i] % PALETTE.length] }} onClick={() => setPicked(w.text)}>
                {w.text}
              </button>
            ))}
          </div>
        )}
        {map.data && <p className="hint">Drag to rotate, scroll to zoom; click a point for its nearest tokens. Colour = similarity cluster (average linkage on cosine, cut at the widest gap).</p>}
      </Panel>
      <Panel title={picked ? `Nearest tokens to “${picked}”` : "Nearest tokens"} testid="neighbours-panel" loading={neighbours.isFetching} error={neighbours.error ? (neighbours.error as Error).message : null}>
        {!picked && <p className="muted">Click a point in the 3D view.</p>}
        {neighbours.data && (
          <>
            {neighbours.data.word.multi_token && <p className="hint">“{picked}” is several tokens ({neighbours.data.word.tokens.map(showToken).join(" ")}): their mean vector is used.</p>}
            <table className="table" data-testid="neighbours-table">
              <thead>
                <tr>
                  <th>token</th>
                  <th>cosine</th>
                </tr>
              </thead>
              <tbody>
                {neighbours.data.neighbours.map((n) => (
                  <tr key={n.token_id} data-testid="neighbour-row" data-token-id={n.token_id} data-cosine={n.cosine}>
                    <td className="mono">{showToken(n.token)}</td>
                    <td>{n.cosine.toFixed(3)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </Panel>
      <Panel title="Cosine similarity between the words" testid="similarity-panel" loading={map.isFetching}>
        {map.data && <Similarity map={map.data} />}
      </Panel>
      <Panel title="Analogy: a − b + c ≈ ?" testid="analogy-panel" loading={analogy.isFetching} error={analogy.error ? (analogy.error as Error).message : null}>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            setAnalogyAsked(analogyForm);
          }}
        >
          {(["a", "b", "c", "expected"] as const).map((k, i) => (
            <span key={k}>
              {i === 1 ? " − " : i === 2 ? " + " : i === 3 ? " ≈ " : ""}
              <input aria-label={`analogy ${k}`} data-testid={`analogy-${k}`} size={9} value={analogyForm[k]} placeholder={k === "expected" ? "expected" : k} onChange={(e) => setAnalogyForm({ ...analogyForm, [k]: e.target.value })} />
            </span>
          ))}
          <button type="submit" data-testid="analogy-run">
            Rank
          </button>
        </form>
        {analogy.data && (
          <>
            {analogy.data.expected && (
              <p data-testid="analogy-rank" data-rank={analogy.data.expected_rank ?? ""}>
                “{analogy.data.expected.text}” ranks <b>#{analogy.data.expected_rank}</b> of the vocabulary (cosine {analogy.data.expected_cosine?.toFixed(3)}); the offsets {analogy.data.a.text} − {analogy.data.b.text} and {analogy.data.expected.text} − {analogy.data.c.text} have cosine {analogy.data.offset_cosine?.toFixed(3)}.
              </p>
            )}
            <ol className="ranked" data-testid="analogy-ranked">
              {analogy.data.ranked.map((r) => (
                <li key={r.token_id} data-token-id={r.token_id}>
                  <span className="mono">{showToken(r.token)}</span> <span className="muted">{r.cosine.toFixed(3)}</span>
                </li>
              ))}
            </ol>
          </>
        )}
      </Panel>
    </div>
  );
}

function Scatter({ map, picked, onPick, analogy }: { map: EmbeddingMap; picked: string | null; onPick: (w: string) => void; analogy: { a: string; b: string; c: string; expected: string } }) {
  const data = useMemo(() => {
    const xyz = (i: number) => map.coords[i].concat([0, 0, 0]).slice(0, 3);
    const texts = map.words.map((w) => w.text);
    const traces: Partial<Plotly.PlotData>[] = [
      {
        type: "scatter3d",
        mode: "text+markers" as Plotly.PlotData["mode"],
        name: "words",
        x: map.coords.map((_, i) => xyz(i)[0]),
        y: map.coords.map((_, i) => xyz(i)[1]),
        z: map.coords.map((_, i) => xyz(i)[2]),
        text: texts,
        textposition: "top center",
        marker: { size: texts.map((t) => (t === picked ? 9 : 6)), color: map.clusters.map((c) => PALETTE[c % PALETTE.length]) },
        hovertemplate: "%{text}<br>click for nearest tokens<extra></extra>",
      },
    ];
    // the analogy's two offsets (b → a and c → expected) as arrows, when all four words are on the map
    const at = (w: string) => texts.indexOf(w);
    const [a, b, c, d] = [analogy.a, analogy.b, analogy.c, analogy.expected].map(at);
    if (a >= 0 && b >= 0 && c >= 0 && d >= 0)
      for (const [from, to, name] of [
        [b, a, `${analogy.b} → ${analogy.a}`],
        [c, d, `${analogy.c} → ${analogy.expected}`],
      ] as const)
        traces.push({
          type: "scatter3d",
          mode: "lines",
          name,
          x: [xyz(from)[0], xyz(to)[0]],
          y: [xyz(from)[1], xyz(to)[1]],
          z: [xyz(from)[2], xyz(to)[2]],
          line: { width: 4, color: "#888" },
          hoverinfo: "name",
        });
    return traces;
  }, [map, picked, analogy]);
  const onClick = useCallback(
    (ev: Plotly.PlotMouseEvent) => {
      const p = ev.points[0];
      if (p && p.curveNumber === 0) onPick(map.words[p.pointNumber].text);
    },
    [map, onPick],
  );
  const ev = map.explained_variance_ratio.map((v) => `${(v * 100).toFixed(0)}%`);
  return (
    <Plot
      testid="embedding-3d"
      data={data}
      height={460}
      onClick={onClick}
      layout={{
        margin: { l: 0, r: 0, t: 0, b: 0 },
        showlegend: data.length > 1,
        legend: { orientation: "h" },
        scene: { xaxis: { title: { text: `PC1 ${ev[0] ?? ""}` } }, yaxis: { title: { text: `PC2 ${ev[1] ?? ""}` } }, zaxis: { title: { text: `PC3 ${ev[2] ?? ""}` } } },
      }}
    />
  );
}

function Similarity({ map }: { map: EmbeddingMap }) {
  const texts = map.words.map((w) => w.text);
  return (
    <table className="table" data-testid="similarity-table">
      <thead>
        <tr>
          <th />
          {texts.map((t) => (
            <th key={t}>{t}</th>
          ))}
        </tr>
      </thead>
      <tbody>
        {map.similarity.map((row, i) => (
          <tr key={texts[i]}>
            <th style={{ color: PALETTE[map.clusters[i] % PALETTE.length] }}>{texts[i]}</th>
            {row.map((v, j) => (
              <td key={j} style={{ background: `rgba(59,111,216,${Math.max(0, v) * 0.6})` }} data-testid="similarity-cell">
                {v.toFixed(2)}
              </td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
