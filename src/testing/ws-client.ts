import { type Client, createClient } from "graphql-ws";
import WebSocket from "ws";

/**
 * A graphql-ws client that connects at once with `authorization` in connection_init and never
 * retries; `connected` resolves once the server acknowledged, `closed` with the close code.
 */
export function connectWs(httpUrl: string, authorization: string): { client: Client; connected: Promise<void>; closed: Promise<number> } {
  let onConnected!: () => void;
  let onClosed!: (code: number) => void;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const closed = new Promise<number>((resolve) => (onClosed = resolve));
  const client = createClient({
    url: httpUrl.replace(/^http/, "ws"),
    webSocketImpl: WebSocket,
    connectionParams: { authorization },
    retryAttempts: 0,
    lazy: false,
    onNonLazyError: () => {},
    on: { connected: () => onConnected(), closed: (event) => onClosed((event as { code: number }).code) },
  });
  return { client, connected, closed };
}
