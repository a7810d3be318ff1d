package extension

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestTypeCheck type-checks the extension's JavaScript (JSDoc types, checkJs)
// against the ComfyUI frontend's published declarations, with the TypeScript
// pinned in package-lock.json. It needs `npm ci` in extension/ first; without
// node_modules it skips, except under CI=true, where it fails.
func TestTypeCheck(t *testing.T) {
	tsc := filepath.Join("node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("extension/node_modules is missing (%v): CI must run `npm ci` in extension/ before the tests", err)
		}
		t.Skip("extension/node_modules is absent: run `npm ci` in extension/ to type-check the extension")
	}
	// Read the inputs tsc reads that the test binary does not embed, so that
	// go test's cache notices when they change.
	for _, f := range []string{"tsconfig.json", "package-lock.json", "types/scripts/app.d.ts", "types/scripts/api.d.ts"} {
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tsc, "-p", ".")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tsc -p extension: %v\n%s", err, out)
	}
}
