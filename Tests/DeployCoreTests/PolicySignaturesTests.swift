import DeployCore
import JSON
import Testing

@Suite struct PolicySignaturesTests {
    @Test func offByDefaultEverywhere() {
        for (_, env) in ApprovalPolicy.defaults.environments {
            #expect(env.signatures == .off)
        }
    }

    @Test func productionCanRequireSignatures() throws {
        let p = try ApprovalPolicy(text: #"{"environments": {"production": {"signatures": {"required": true, "allowed_signers": "/etc/model-deployer/allowed_signers"}}}}"#)
        let prod = try #require(p.environment("production"))
        #expect(prod.signatures == SignatureRequirement(required: true, allowedSigners: "/etc/model-deployer/allowed_signers"))
        // The rest of production's policy is untouched.
        #expect(prod.fourEyes && prod.gates == [.deploy, .promote])
        #expect(p.environment("staging")?.signatures == .off)
        #expect(prod.gateSentence().contains("SSH-signed"))
        // The printed policy reads back the same.
        #expect(try ApprovalPolicy(json: p.toJSON()) == p)
    }

    @Test(arguments: [
        (#"{"signatures": {"required": true}}"#, "allowed_signers"),
        (#"{"signatures": {"required": true, "allowed_signers": "relative/file"}}"#, "absolute"),
        (#"{"signatures": {"required": "yes", "allowed_signers": "/x"}}"#, "required"),
        (#"{"signatures": {"required": true, "allowed_signers": "/x", "namespace": "git"}}"#, "namespace"),
        (#"{"signature": {"required": true}}"#, "signature"),
        (#"{"signatures": true}"#, "signatures"),
    ])
    func mistakesAreErrors(env: String, mentions: String) {
        #expect {
            try ApprovalPolicy(text: #"{"environments": {"production": "# + env + "}}")
        } throws: { error in
            "\(error)".contains(mentions)
        }
    }
}
