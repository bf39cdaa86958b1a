@testable import DeployerAgent
import DeployRuntime
import Testing

/// `serve --router` / `MODEL_DEPLOYER_ROUTER` and `--haproxy` / `MODEL_DEPLOYER_HAPROXY`.
struct CLIRouterTests {
    func options(_ args: [String], _ env: [String: String] = [:]) -> ServeOptions? {
        if case .serve(let o) = CLI.parse(["serve"] + args, environment: env) { return o }
        return nil
    }

    func usageError(_ args: [String], _ env: [String: String] = [:]) -> String? {
        if case .usageError(let m) = CLI.parse(["serve"] + args, environment: env) { return m }
        return nil
    }

    @Test func haproxyIsTheDefault() {
        #expect(options([])?.router == .haproxy)
        #expect(options([], ["MODEL_DEPLOYER_ROUTER": ""])?.router == .haproxy)
        #expect(options([], ["MODEL_DEPLOYER_ROUTER": "nginx"])?.router == .nginx)
        #expect(options([])?.haproxy == nil)
    }

    @Test func flagAndEnvironmentChooseTheRouter() {
        #expect(options(["--router", "haproxy"])?.router == .haproxy)
        #expect(options(["--router=haproxy"])?.router == .haproxy)
        #expect(options([], ["MODEL_DEPLOYER_ROUTER": "haproxy"])?.router == .haproxy)
        // The flag wins over the variable, also over a variable that would be refused.
        #expect(options(["--router", "nginx"], ["MODEL_DEPLOYER_ROUTER": "haproxy"])?.router == .nginx)
        #expect(options(["--router", "haproxy"], ["MODEL_DEPLOYER_ROUTER": "envoy"])?.router == .haproxy)
        #expect(options(["--haproxy", "/opt/haproxy"])?.haproxy == "/opt/haproxy")
        #expect(options([], ["MODEL_DEPLOYER_HAPROXY": "/usr/local/sbin/haproxy"])?.haproxy == "/usr/local/sbin/haproxy")
        #expect(options(["--haproxy=/x"], ["MODEL_DEPLOYER_HAPROXY": "/y"])?.haproxy == "/x")
    }

    @Test func anUnknownRouterIsAUsageError() {
        #expect(usageError(["--router", "envoy"]) == "--router must be one of nginx, haproxy (got 'envoy')")
        #expect(usageError([], ["MODEL_DEPLOYER_ROUTER": "HAProxy"]) == "MODEL_DEPLOYER_ROUTER must be one of nginx, haproxy (got 'HAProxy')")
        #expect(usageError(["--router"]) == "option '--router' needs a value")
        #expect(usageError(["--haproxy"]) == "option '--haproxy' needs a value")
    }

    @Test func helpListsTheRouterOptions() {
        let text = CLI.help("serve")
        #expect(text.contains("--router KIND"))
        #expect(text.contains("MODEL_DEPLOYER_ROUTER"))
        #expect(text.contains("--haproxy PATH"))
        #expect(text.contains("MODEL_DEPLOYER_HAPROXY"))
    }
}
