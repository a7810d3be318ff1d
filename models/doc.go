// Package models makes sure a GPU host has the model files a workshop needs.
//
// A manifest (YAML, see ParseManifest) lists each file by ComfyUI model
// folder, file name, URL and sha256. Sync checks every file under the models
// directory and downloads what is missing or wrong: to file.part, resuming a
// partial download with an HTTP Range request (and starting again when the
// server does not honour it), verifying the sha256 and size, then fsyncing
// and renaming it into place. Several files download at once, with progress
// logged every few seconds and a summary at the end. Network errors are
// retried with backoff; a 404, a denied request or a wrong hash after a full
// download fails that file for good.
//
// Hashing files of tens of gigabytes is slow, so verified hashes are kept in
// a small JSON file in the models directory (CacheFile), keyed by path and
// valid while the file's size and modification time are unchanged.
package models
