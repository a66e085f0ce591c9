/**
 * The drivers' memory for aging (PolicyInput.userLastServedAtMs): when each user was last seen
 * with a job in flight. The scheduler notes what each snapshot shows; the simulator notes the
 * same at every decision and when a job ends. Pure: time is passed in.
 */
export type ServiceMemory = Map<string, number>;

/** Records that these users have jobs in flight at `nowMs`. */
export function noteInFlight(
  memory: ServiceMemory,
  userInFlight: Record<string, number>,
  nowMs: number,
): void {
  for (const [user, n] of Object.entries(userInFlight))
    if (n > 0) memory.set(user, Math.max(memory.get(user) ?? nowMs, nowMs));
}

/** Records that a user had a job in flight until `atMs` (its job just ended). */
export function noteServed(memory: ServiceMemory, userId: string, atMs: number): void {
  memory.set(userId, Math.max(memory.get(userId) ?? atMs, atMs));
}

/** Forgets users not seen for `maxAgeMs`: their wait then counts from their oldest ready job again. */
export function forgetIdle(memory: ServiceMemory, nowMs: number, maxAgeMs: number): void {
  for (const [user, at] of memory) if (nowMs - at > maxAgeMs) memory.delete(user);
}

/** The memory as PolicyInput wants it, limited to the given users. */
export function lastServedFor(memory: ServiceMemory, users: Iterable<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const user of users) {
    const at = memory.get(user);
    if (at !== undefined) out[user] = at;
  }
  return out;
}
