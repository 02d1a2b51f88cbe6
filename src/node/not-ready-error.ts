// The one refusal a snapshot source gives that is worth waiting out.

/**
 * A replica cannot be a snapshot source yet: it has not installed the epoch that added the joiner
 * (epochMin), it is not a member, or it is joining itself. It will be ready soon, or another
 * replica is: ask again. Any other error from an export is a real failure and must not be retried.
 */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotReadyError";
  }
}
