/**
 * One line for the errors a listening socket fails with at start (port taken, not allowed), naming the
 * port and the variable that sets it; undefined for anything else (which keeps its stack).
 */
export function listenErrorLine(err: unknown, port: number, variable: string): string | undefined {
  const code = (err as { code?: string } | null)?.code;
  if (code === "EADDRINUSE") {
    return `port ${port} is already in use (another copy of this server?): stop it, or set ${variable} to another port (${variable}=0 picks a free one)`;
  }
  if (code === "EACCES") return `not allowed to listen on port ${port}: set ${variable} to a port above 1023`;
  if (code === "EADDRNOTAVAIL") return `cannot listen on port ${port}: the HOST address is not one of this machine's`;
  return undefined;
}
