import { useEffect, useRef, useState } from "react";

export interface Async<T> {
  data: T | null;
  loading: boolean;
  error: string | null;
}
export const idle = <T,>(): Async<T> => ({ data: null, loading: false, error: null });

/** Fetch ``fn()`` whenever ``deps`` change (after ``delay`` ms), dropping answers to superseded calls. */
export function useView<T>(fn: (() => Promise<T>) | null, deps: unknown[], delay = 0): Async<T> {
  const [state, setState] = useState<Async<T>>(idle);
  const seq = useRef(0);
  useEffect(() => {
    const me = ++seq.current;
    if (!fn) {
      setState(idle);
      return;
    }
    setState((s) => ({ ...s, loading: true }));
    const timer = setTimeout(() => {
      fn().then(
        (data) => me === seq.current && setState({ data, loading: false, error: null }),
        (e: Error) => me === seq.current && setState({ data: null, loading: false, error: e.message }),
      );
    }, delay);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return state;
}
