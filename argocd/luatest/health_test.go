// Package luatest runs the Argo CD health checks under ../resource_customizations the way Argo CD does.
//
// Like Argo CD's own util/lua tests it walks resource_customizations/<group>/<kind>/, reads each
// health_test.yaml, decodes every inputPath with sigs.k8s.io/yaml into the object Argo CD hands to the
// script as the global `obj`, runs health.lua in github.com/yuin/gopher-lua and compares the returned
// {status, message} with healthStatus. Unlike Argo CD's test, the VM opens only the libraries Argo CD
// opens for a check installed through argocd-cm (package, base, table; no string/math/os), so a script
// that passes here also runs from argocd-cm without useOpenLibs.
package luatest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

const root = "../resource_customizations"

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type healthTests struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

// The statuses Argo CD accepts from a health script; anything else becomes Unknown there.
var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// toLua converts a decoded JSON value into a Lua value (what Argo CD's decodeValue does).
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// runHealth executes script against obj with argocd-cm's library set and a 1 s budget, as Argo CD does.
func runHealth(script string, obj map[string]any) (healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("expected a table from the script, got %s", l.Get(-1).Type())
	}
	hs := healthStatus{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}
	if !validStatus[hs.Status] {
		return hs, fmt.Errorf("invalid health status %q (Argo CD would show Unknown)", hs.Status)
	}
	return hs, nil
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestHealthScripts(t *testing.T) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "health.lua" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatalf("no health.lua under %s", root)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		var tests healthTests
		readYAML(t, filepath.Join(dir, "health_test.yaml"), &tests)
		if len(tests.Tests) == 0 {
			t.Fatalf("%s: health_test.yaml has no tests", dir)
		}
		used := map[string]bool{}
		seen := map[string]bool{}
		for _, tc := range tests.Tests {
			used[filepath.Clean(tc.InputPath)] = true
			seen[tc.HealthStatus.Status] = true
			name, _ := filepath.Rel(root, filepath.Join(dir, tc.InputPath))
			t.Run(name, func(t *testing.T) {
				obj := map[string]any{}
				readYAML(t, filepath.Join(dir, tc.InputPath), &obj)
				got, err := runHealth(string(script), obj)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.HealthStatus {
					t.Errorf("got %+v, want %+v", got, tc.HealthStatus)
				}
			})
		}
		// Every testdata file must be exercised, and the three outcomes a user sees must all be covered.
		files, _ := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
		for _, f := range files {
			rel, _ := filepath.Rel(dir, f)
			if !used[rel] {
				t.Errorf("%s is not used by %s/health_test.yaml", f, dir)
			}
		}
		for _, status := range []string{"Healthy", "Progressing", "Degraded"} {
			if !seen[status] {
				t.Errorf("%s/health_test.yaml has no %s case", dir, status)
			}
		}
	}
}

// The harness itself must reject what Argo CD rejects, or the tests above could pass for the wrong reason.
func TestHarnessRejectsWhatArgoCDRejects(t *testing.T) {
	cases := map[string]string{
		"invalid status":        `return {status = "Fine"}`,
		"no table":              `return "Healthy"`,
		"string lib not opened": `return {status = string.format("%s", "Healthy")}`,
		"runaway script":        `while true do end`,
	}
	for name, script := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := runHealth(script, map[string]any{}); err == nil {
				t.Errorf("expected an error for %q", script)
			}
		})
	}
}
