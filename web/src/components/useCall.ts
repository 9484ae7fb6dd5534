import { useCallback, useRef, useState } from "react";
import { ApiError } from "../api/client";

export interface CallState<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
}

/** One API call's loading / error / data state; `run` starts it (a newer run supersedes an older one). */
export function useCall<T, A extends unknown[]>(
  fn: (...args: A) => Promise<T>,
): [CallState<T>, (...args: A) => Promise<T | undefined>, (data: T | undefined) => void] {
  const [state, setState] = useState<CallState<T>>({ data: undefined, error: undefined, loading: false });
  const latest = useRef(0);
  const run = useCallback(
    async (...args: A) => {
      const ticket = ++latest.current;
      setState((s) => ({ ...s, loading: true, error: undefined }));
      try {
        const data = await fn(...args);
        if (ticket === latest.current) setState({ data, error: undefined, loading: false });
        return data;
      } catch (e) {
        const error = e instanceof ApiError ? e : new ApiError(String((e as Error)?.message ?? e), 0);
        if (ticket === latest.current) setState((s) => ({ ...s, error, loading: false }));
        return undefined;
      }
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [fn],
  );
  const set = useCallback((data: T | undefined) => setState({ data, error: undefined, loading: false }), []);
  return [state, run, set];
}
