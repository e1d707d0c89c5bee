import type { ReactNode } from "react";

// Every view sits in a panel with the same loading and error states.
export function Panel(props: {
  title: string;
  testid: string;
  loading?: boolean;
  error?: string | null;
  extra?: ReactNode;
  children?: ReactNode;
  wide?: boolean;
}) {
  return (
    <section className={`panel${props.wide ? " wide" : ""}`} data-testid={props.testid} aria-busy={props.loading ? "true" : "false"}>
      <header>
        <h2>{props.title}</h2>
        {props.loading && <span className="spinner" role="status">computing…</span>}
        {props.extra}
      </header>
      {props.error ? (
        <div className="error" role="alert" data-testid={`${props.testid}-error`}>
          {props.error}
        </div>
      ) : (
        props.children
      )}
    </section>
  );
}
