// Types for package-wasm.mjs (plain JS so `npm run package:wasm` needs no compiler).
export declare const ROOT: string;
export declare const BUILD_DIR: string;
export declare const OUT_DIR: string;
export declare const MEDIA: { manifest: string; index: string; wasmConfig: string; wasmLayer: string };
export interface BuiltModule { file: string; bytes: number; sha256: string; content: Buffer }
export interface Descriptor { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }
export interface OciManifest { schemaVersion: 2; mediaType: string; config: Descriptor; layers: Descriptor[]; annotations: Record<string, string> }
export interface OciIndex { schemaVersion: 2; mediaType: string; manifests: Descriptor[] }
export interface Image { blobs: Map<string, Buffer>; manifest: OciManifest; manifestDigest: string; moduleDigest: string; index: OciIndex }
export declare function readBuildManifest(buildDir?: string): Record<string, BuiltModule>;
export declare function buildImage(name: string, wasm: Buffer, version: string): Image;
export declare function writeLayout(dir: string, image: Image): void;
export declare function packageVersion(): string;
export declare function packageAll(opts?: { buildDir?: string; outDir?: string; version?: string }): Record<string, { dir: string; tag: string; manifestDigest: string; moduleDigest: string }>;
