export declare const PLUGINS_FILE: string;
export declare const DEFAULT_REPOSITORY: string;
export declare function pinText(text: string, images: Record<string, { manifestDigest: string; moduleDigest: string }>, repository?: string): string;
