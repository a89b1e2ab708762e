/**
 * What stages may report as outcomes (to FDS counters): the subject kinds an
 * outcome can be about, and the shape of a stage type's declared events.
 * Lives in the pipeline so the stage contract names it without importing FDS.
 */
export const SUBJECT_KINDS = ['user', 'device', 'ip', 'client', 'cert'] as const;
export type SubjectKind = (typeof SUBJECT_KINDS)[number];

/** One event a stage type can report, and for which subject kinds. */
export interface DeclaredEvent {
  readonly event: string;
  readonly kinds: readonly SubjectKind[];
}
