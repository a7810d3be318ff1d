// Types for the frontend's "scripts/api.js" shim (see app.d.ts).
import type { ComfyApi } from "@comfyorg/comfyui-frontend-types";

export declare const api: ComfyApi;
