// Builds argocd-health: runs an Argo CD resource health check (health.lua) with gopher-lua, the
// Lua interpreter Argo CD embeds, the way Argo CD runs a check configured in argocd-cm.
module delivery-operator.dev/toolchain/argocd-health

go 1.26.0

require github.com/yuin/gopher-lua v1.1.2
