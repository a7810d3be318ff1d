// Types for the frontend's "scripts/app.js" shim, which the extension imports
// as "../../scripts/app.js". tsconfig.json's rootDirs lays this folder over
// web/, so that relative import resolves here for type checking only.
import type { ComfyApp } from "@comfyorg/comfyui-frontend-types";

export declare const app: ComfyApp;
