// Package version says which build a binary is: the version the build
// stamped into it, else what the Go toolchain recorded (the module version,
// or the VCS revision of the checkout), else "dev".
//
//	go build -ldflags "-X github.com/comfy-workshop/workshop/internal/version.stamp=v1.2.0" ./cmd/...
package version

import "runtime/debug"

// stamp is set at build time (the Taskfile's build does it).
var stamp string

// String is the version of this binary.
func String() string {
	if stamp != "" {
		return stamp
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + rev[:min(len(rev), 12)] + modified
}
