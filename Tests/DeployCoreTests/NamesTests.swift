import DeployCore
import Testing

@Suite struct NamesTests {
    @Test(arguments: ["iris_clf", "a", "0", "v1.2-rc_3", "production", String(repeating: "a", count: 63), "dz7m2ruqqwzcfqv5"])
    func valid(name: String) {
        #expect(Names.validate(name, field: "model_name") == nil)
    }

    @Test(arguments: ["", "Iris", "-x", "_x", ".x", "a b", "a/b", "../etc", "a:b", "a\u{0}b", "é", String(repeating: "a", count: 64), "a;rm -rf"])
    func invalid(name: String) {
        let message = Names.validate(name, field: "model_name")
        #expect(message != nil)
        #expect(message?.hasPrefix("model_name") == true)
    }

    @Test func messagesEscapeControlCharacters() {
        let m = Names.validate("a\nb", field: "model_name")
        #expect(m?.contains("\n") == false)
        #expect(m?.contains("\\n") == true)
    }

    @Test func environmentsAndTags() {
        #expect(Names.validateEnvironment("staging") == nil)
        #expect(Names.validateEnvironment("Staging") != nil)
        #expect(Names.validateTag("iris_svc:dz7m2ruqqwzcfqv5", field: "bento") == nil)
        #expect(Names.validateTag("iris_svc", field: "bento") != nil)
        #expect(Names.validateTag("iris_svc:a:b", field: "bento") != nil)
        #expect(Names.validateTag("iris_svc:../x", field: "bento") != nil)
    }

    @Test func actors() {
        #expect(Names.validateActor("alice@example.com", field: "approver") == nil)
        #expect(Names.validateActor("Ada Lovelace", field: "approver") == nil)
        #expect(Names.validateActor("", field: "approver") != nil)
        #expect(Names.validateActor("   ", field: "approver") != nil)
        #expect(Names.validateActor("bob\u{7}", field: "approver") != nil)
        #expect(Names.validateActor("bob\nmallory", field: "requested_by") != nil)
        #expect(Names.validateActor(String(repeating: "x", count: 128), field: "approver") == nil)
        #expect(Names.validateActor(String(repeating: "x", count: 129), field: "approver") != nil)
    }

    @Test func apiNames() {
        #expect(Names.validateAPI("predict") == nil)
        #expect(Names.validateAPI("Predict_2") == nil)
        #expect(Names.validateAPI("2predict") != nil)
        #expect(Names.validateAPI("a/b") != nil)
    }
}
