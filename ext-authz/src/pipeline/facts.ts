/**
 * Typed facts stages pass to later stages of the same Check. A capability
 * declares its facts in its own folder (`<folder>/facts.ts`) with
 * `defineFact<T>(name)`; the pipeline never lists them, so a new capability
 * adds facts without editing this layer. A consumer reads a fact by importing
 * its key, which the layering check only allows from its own folder, the
 * pipeline (facts several capabilities share, below), or a capability it
 * declares in `needs`.
 *
 * Each key gets a small slot number when it is defined, so `CheckContext`
 * stores values in an array it allocates only when a stage sets a fact.
 */

/** A typed key for one fact; compare by identity, the name is for messages and docs. */
export interface FactKey<T> {
  readonly name: string;
  /** Slot in the context's fact array. */
  readonly slot: number;
  /** Never set: carries `T` so `get` / `set` are typed by the key. */
  readonly __type?: (value: T) => T;
}

let nextSlot = 0;

/** Declares a fact (call once per fact, at module load). */
export function defineFact<T>(name: string): FactKey<T> {
  return Object.freeze({ name, slot: nextSlot++ });
}

/**
 * The client certificate's fingerprint and serial (lowercase hex), set by an
 * identity stage that verified one (mtls); read by FDS for `cert` subjects.
 * Shared facts live here because their readers do not `need` the producer.
 */
export const CERT_FINGERPRINT = defineFact<string>('cert.fingerprint');
export const CERT_SERIAL = defineFact<string>('cert.serial');

/** A device whose request signature verified (app-signature), for the Passport's device block. */
export interface VerifiedDevice {
  readonly id: string;
  /** `ios`, `android`, `web`, `desktop`. */
  readonly platform: string;
  /** Attestation level granted at registration (e.g. `basic`). */
  readonly attestation: string;
}

/** Shared (not in app-signature/) because the passport stage reads it without needing that capability. */
export const VERIFIED_DEVICE = defineFact<VerifiedDevice>('device.verified');
