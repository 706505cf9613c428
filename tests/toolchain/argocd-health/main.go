// argocd-health <script.lua> <object.json> runs an Argo CD custom health check on one object
// and prints {"status": ..., "message": ...}.
//
// It mirrors Argo CD's util/lua (VM.runLua, ExecuteHealthLua) for a script from argocd-cm
// (resource.customizations.health.<group>_<kind>, useOpenLibs unset):
//   - a state without the standard libraries, then only package, base and table opened (so
//     `string.*`, `math.*` and `io.*` are unavailable, as in Argo CD; its "safe os" with only
//     os.time and os.date is left out: the check does not use it);
//   - a 1 second deadline;
//   - the global `obj` is the object converted as Argo CD's decodeValue does: maps become
//     tables with string keys, arrays 1-based tables, numbers LNumber, strings, booleans, and
//     null nil;
//   - the value left on the stack must be a table; its `status` must be one of Argo CD's
//     health codes, else the result is Unknown "Lua returned an invalid health status".
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

var validStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

// decodeValue converts a JSON value as Argo CD converts the unstructured object.
func decodeValue(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		// The API server's unstructured objects hold int64 or float64, never json.Number.
		if i, err := v.Int64(); err == nil {
			return lua.LNumber(i)
		}
		f, _ := v.Float64()
		return lua.LNumber(f)
	case []interface{}:
		arr := L.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(L, item))
		}
		return arr
	case map[string]interface{}:
		tbl := L.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(L, item))
		}
		return tbl
	}
	return lua.LNil
}

func run(script string, object map[string]interface{}) (*healthStatus, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", decodeValue(L, object))
	if err := L.DoString(script); err != nil {
		return nil, err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", L.Get(-1).Type())
	}
	// Argo CD encodes the table to JSON and decodes a HealthStatus: both fields are strings.
	field := func(name string) (string, error) {
		switch v := ret.RawGetString(name).(type) {
		case *lua.LNilType:
			return "", nil
		case lua.LString:
			return string(v), nil
		default:
			return "", fmt.Errorf("%s is a %s, not a string", name, v.Type())
		}
	}
	status, err := field("status")
	if err != nil {
		return nil, err
	}
	message, err := field("message")
	if err != nil {
		return nil, err
	}
	if !validStatus[status] {
		return &healthStatus{"Unknown", "Lua returned an invalid health status"}, nil
	}
	return &healthStatus{status, message}, nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health <script.lua> <object.json>")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var object map[string]interface{}
	if err := dec.Decode(&object); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[2], err)
		os.Exit(1)
	}
	hs, err := run(string(script), object)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	out, _ := json.Marshal(hs)
	fmt.Println(string(out))
}
