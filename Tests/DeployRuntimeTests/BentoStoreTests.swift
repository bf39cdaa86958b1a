@testable import DeployRuntime
import JSON
import Testing

@Suite struct MiniYAMLTests {
    @Test func parsesNestedMappingsSequencesAndScalars() {
        let doc = MiniYAML.parse("""
        name: x
        quoted: 'it''s: here'
        dq: "a\\tb"
        n: 3
        f: 1.5
        b: true
        nothing: null
        empty: []
        emptymap: {}
        flow: [a, 'b c']
        list:
        - one
        - k: v
          k2: 2
        - - nested
        map:
          inner:
            deep: yes
          seq:
            - 1
            - 2
        multi: 'first

          second'
        plain: word one
          continued here
        after: z
        """)
        #expect(doc["name"]?.string == "x")
        #expect(doc["quoted"]?.string == "it's: here")
        #expect(doc["dq"]?.string == "a\tb")
        #expect(doc["n"]?.json == .int(3))
        #expect(doc["f"]?.json == .double(1.5))
        #expect(doc["b"]?.json == .bool(true))
        #expect(doc["nothing"]?.json == .null)
        #expect(doc["empty"]?.items.isEmpty == true)
        #expect(doc["emptymap"]?.json == .object([:]))
        #expect(doc["flow"]?.json == ["a", "b c"])
        #expect(doc["list"]?.items.count == 3)
        #expect(doc["list"]?.items[0].string == "one")
        #expect(doc["list"]?.items[1].json == ["k": "v", "k2": 2])
        #expect(doc["list"]?.items[2].json == ["nested"])
        #expect(doc["map"]?["inner"]?["deep"]?.string == "yes")
        #expect(doc["map"]?["seq"]?.json == [1, 2])
        #expect(doc["multi"]?.string == "first\nsecond")
        #expect(doc["plain"]?.string == "word one continued here")
        #expect(doc["after"]?.string == "z")
    }

    @Test func quotedNumbersStayStrings() {
        let doc = MiniYAML.parse("version: '0123'\nother: 0123x\n")
        #expect(doc["version"]?.json == .string("0123"))
        #expect(doc["other"]?.string == "0123x")
    }
}

@Suite struct BentoStoreParsingTests {
    @Test func readsRealModelYAML() throws {
        let m = try #require(BentoStoreReader.parseModel(StoreFixtures.modelYAML, sizeBytes: 10))
        #expect(m.name == "iris_clf")
        #expect(m.version == "4zmgrtxl5ozgcax4")
        #expect(m.tag == "iris_clf:4zmgrtxl5ozgcax4")
        #expect(m.module == "bentoml.sklearn")
        #expect(m.labels == ["kind": "v1", "owner": "examples"])
        #expect(m.metadata == ["kind": "v1", "class_offset": 0, "n_features": 4, "train_accuracy": 1.0])
        #expect(m.creationTime == "2026-11-29T11:56:23.959918+00:00")
        #expect(m.sizeBytes == 10)
    }

    @Test func readsRealBentoYAML() throws {
        let b = try #require(BentoStoreReader.parseBento(StoreFixtures.bentoYAML))
        #expect(b.tag == "iris_classifier:44bjszxl5o2ocax4")
        #expect(b.models == ["iris_clf:4zmgrtxl5ozgcax4"])
        #expect(b.apis == ["predict"])
        #expect(b.resources == ["cpu": "1"])
        #expect(b.labels["model_kind"] == "v1")
        #expect(b.creationTime == "2026-11-29T11:56:25.148673+00:00")
    }

    @Test func timestampsOrderByInstantNotText() throws {
        let a = try #require(BentoStoreReader.epochSeconds("2026-11-29T11:56:23.959918+00:00"))
        let b = try #require(BentoStoreReader.epochSeconds("2026-11-29T12:56:23.000000+02:00"))
        #expect(b < a)
        #expect(BentoStoreReader.epochSeconds("1970-01-01T00:00:01Z") == 1)
        #expect(BentoStoreReader.epochSeconds("2000-03-01T00:00:00+00:00") == 951_868_800)
        #expect(BentoStoreReader.isOlder("2026-11-29T12:56:23+02:00", "2026-11-29T11:56:23+00:00"))
    }

    @Test func storeLookupsOnDisk() throws {
        let home = try TempDir("store")
        defer { home.remove() }
        func put(_ path: String, _ text: String) throws {
            try TempDir.write(home.path + "/" + path, text)
        }
        let old = StoreFixtures.modelYAML
        // A lexically larger version created earlier must not win "latest".
        try put("models/iris_clf/zzzz/model.yaml", old.replacingAll("4zmgrtxl5ozgcax4", "zzzz")
            .replacingAll("2026-11-29T11:56:23.959918+00:00", "2026-11-29T10:00:00.000000+00:00"))
        try put("models/iris_clf/aaaa/model.yaml", old.replacingAll("4zmgrtxl5ozgcax4", "aaaa"))
        try put("bentos/iris_classifier/bbbb/bento.yaml", StoreFixtures.bentoYAML.replacingAll("44bjszxl5o2ocax4", "bbbb")
            .replacingAll("iris_clf:4zmgrtxl5ozgcax4", "iris_clf:aaaa"))
        let store = BentoStoreReader(home: home.path)
        #expect(try store.model(name: "iris_clf", version: "latest").version == "aaaa")
        #expect(try store.model(name: "iris_clf", version: "zzzz").version == "zzzz")
        #expect(try store.model(name: "iris_clf", version: "aaaa").sizeBytes ?? 0 > 0)
        #expect(throws: RuntimeError.self) { try store.model(name: "iris_clf", version: "nope") }
        do { _ = try store.model(name: "nope", version: "latest") } catch { #expect(error.code == "model_not_found") }
        do { _ = try store.bento(tag: "iris_classifier:nope") } catch { #expect(error.code == "bento_not_found") }
        do { _ = try store.model(name: "../etc", version: "x") } catch { #expect(error.code == "invalid_name") }
        #expect(try store.bentos().map(\.tag) == ["iris_classifier:bbbb"])
        #expect(try store.bento(tag: "iris_classifier").version == "bbbb")
        #expect(try store.newestBento(serving: "iris_clf:aaaa")?.tag == "iris_classifier:bbbb")
        #expect(try store.newestBento(serving: "iris_clf:latest")?.tag == "iris_classifier:bbbb")
        #expect(try store.newestBento(serving: "iris_clf:zzzz") == nil)
    }
}
