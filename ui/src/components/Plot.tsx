import Plotly from "plotly.js-dist-min";
import { useEffect, useRef } from "react";

// A thin Plotly wrapper: react to new data with Plotly.react, purge on unmount.
export function Plot(props: {
  data: Partial<Plotly.PlotData>[];
  layout?: Partial<Plotly.Layout>;
  height?: number;
  testid?: string;
  onClick?: (ev: Plotly.PlotMouseEvent) => void;
}) {
  const ref = useRef<HTMLDivElement>(null);
  const { data, layout, height = 280, onClick } = props;
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const full: Partial<Plotly.Layout> = {
      margin: { l: 60, r: 10, t: 10, b: 40 },
      height,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "DejaVu Sans, system-ui, sans-serif", size: 11 },
      ...layout,
    };
    void Plotly.react(el, data as Plotly.Data[], full, { displaylogo: false, responsive: true });
    const gd = el as unknown as Plotly.PlotlyHTMLElement;
    if (onClick) gd.on("plotly_click", onClick);
    return () => {
      gd.removeAllListeners?.("plotly_click");
    };
  }, [data, layout, height, onClick]);
  useEffect(() => {
    const el = ref.current;
    return () => {
      if (el) Plotly.purge(el);
    };
  }, []);
  // The div reserves the plot's height itself, so text below never slides under a plot mid-redraw.
  return <div ref={ref} data-testid={props.testid} className="plot" style={{ minHeight: height }} />;
}
