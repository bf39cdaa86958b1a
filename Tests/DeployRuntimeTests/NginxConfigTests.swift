import DeployCore
@testable import DeployRuntime
import Testing

@Suite struct NameRulesTests {
    @Test(arguments: ["iris", "a", "iris_clf", "m.v-2", "0abc", String(repeating: "a", count: 63)])
    func acceptsValidNames(_ name: String) { #expect(RuntimeNames.isValidName(name)) }

    @Test(arguments: ["", "Iris", "_a", ".a", "-a", "a b", "a/b", "a;b", "a$b", "a\nb", "ä", String(repeating: "a", count: 64)])
    func rejectsInvalidNames(_ name: String) { #expect(!RuntimeNames.isValidName(name)) }

    @Test func versionsAndTags() {
        #expect(RuntimeNames.isValidVersion("iris_clf:4zmgrtxl5ozgcax4"))
        #expect(RuntimeNames.isValidVersion("V1.2+build"))
        #expect(!RuntimeNames.isValidVersion("v1\"; evil"))
        #expect(!RuntimeNames.isValidVersion("v 1"))
        #expect(!RuntimeNames.isValidVersion("$host"))
        #expect(RuntimeNames.isValidTag("iris_classifier:44bjszxl5o2ocax4"))
        #expect(RuntimeNames.isValidTag("iris_classifier"))
        #expect(!RuntimeNames.isValidTag("iris:a:b"))
        #expect(!RuntimeNames.isValidTag("../x:y"))
        #expect(!RuntimeNames.isValidTag("--help"))
    }

    @Test func routeIdentifiersDoNotCollide() {
        let pairs = [("a.b", "p"), ("a_b", "p"), ("a-b", "p"), ("a", "b.p"), ("a.b.p", "x"), ("a", "b_sp"), ("a_s", "p")]
        let ids = pairs.map { RuntimeNames.routeIdentifier(modelName: $0.0, environment: $0.1) }
        #expect(Set(ids).count == ids.count)
        for id in ids {
            #expect(id.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" })
        }
    }
}

@Suite struct NginxConfigTests {
    let route = RouteInfo(modelName: "iris.v", environment: "prod", routerPort: 18080, upstreamPort: 39001,
                          slot: .green, version: "iris_classifier:44bjszxl5o2ocax4")

    @Test func rendersRouteWithRetryKeepaliveAndHeaders() throws {
        let text = try NginxConfig.renderRoute(route)
        #expect(text.contains("listen 127.0.0.1:18080;"))
        #expect(text.contains("server 127.0.0.1:39001 max_fails=0;"))
        #expect(text.contains("upstream md_iris_dv_sprod {"))
        #expect(text.contains("proxy_pass http://md_iris_dv_sprod;"))
        #expect(text.contains("proxy_next_upstream error timeout http_502"))
        #expect(text.contains("proxy_http_version 1.1;"))
        #expect(text.contains("keepalive 32;"))
        #expect(text.contains("add_header X-Model-Deployer-Slot \"green\" always;"))
        #expect(text.contains("add_header X-Model-Deployer-Version \"iris_classifier:44bjszxl5o2ocax4\" always;"))
    }

    @Test func aRouteSharedForATakeoverListensWithReuseportAndParsesBackTheSame() throws {
        let text = try NginxConfig.renderRoute(route, reusePort: true)
        #expect(text.contains("listen 127.0.0.1:18080 reuseport;"))
        #expect(NginxConfig.parseRoute(text) == route)
        #expect(!(try NginxConfig.renderRoute(route)).contains("reuseport"))
    }

    @Test func parsesBackWhatItRenders() throws {
        #expect(NginxConfig.parseRoute(try NginxConfig.renderRoute(route)) == route)
        #expect(NginxConfig.parseRoute("server {}") == nil)
        #expect(NginxConfig.parseRoute("# model-deployer route: model=Bad environment=p router_port=1 upstream_port=2 slot=blue version=v") == nil)
    }

    @Test func refusesUnsafeValues() {
        var bad = route
        bad.version = "v1\"; return 200"
        #expect(throws: RuntimeError.self) { try NginxConfig.renderRoute(bad) }
        bad = route
        bad.modelName = "x;y"
        #expect(throws: RuntimeError.self) { try NginxConfig.renderRoute(bad) }
        bad = route
        bad.upstreamPort = 70000
        #expect(throws: RuntimeError.self) { try NginxConfig.renderRoute(bad) }
    }

    @Test func mainConfigKeepsEverythingUnderThePrefix() {
        let text = NginxConfig.renderMain(prefix: "/h/router")
        #expect(text.contains("pid /h/router/run/nginx.pid;"))
        #expect(text.contains("include /h/router/conf.d/*.conf;"))
        #expect(text.contains("proxy_temp_path /h/router/temp/proxy;"))
        #expect(text.contains("daemon on;"))
        #expect(!text.contains("user "))
        #expect(NginxConfig.renderMain(prefix: "/h", user: "root").contains("user root;\ndaemon on;"))
    }

    @Test func fileNamesAreDistinctForLookalikeNames() {
        #expect(NginxConfig.routeFileName(modelName: "a.b", environment: "p") != NginxConfig.routeFileName(modelName: "a_b", environment: "p"))
    }
}
