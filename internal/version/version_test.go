package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	cases := []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "8953823abcdef0123456789"}, {Key: "vcs.modified", Value: "true"}}}, "dev-8953823abcde+dirty"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for _, c := range cases {
		if got := fromBuildInfo(&c.bi); got != c.want {
			t.Errorf("%+v: %q, want %q", c.bi, got, c.want)
		}
	}
}

func TestStampWins(t *testing.T) {
	old := stamp
	defer func() { stamp = old }()
	stamp = "v9.9.9"
	if String() != "v9.9.9" {
		t.Errorf("String() = %q with a stamp", String())
	}
}
