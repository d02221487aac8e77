// Written by `swift run zaas-train injection` from infra/labelled/injection.jsonl; do not edit.

extension InjectionClassifier {
    public static let trainedWeights: [Double] = [
        1.982368,  // fake_delimiter
        2.678923,  // override_instructions
        0.556508,  // override_verb
        1.605966,  // model_addressee
        0.894518,  // system_addressee
        3.466686,  // second_person
        2.048941,  // imperative_opening
        0.435621,  // imperative_about_output
        2.045739,  // about_output
        1.474839,  // output_restriction
        2.732449,  // quoted_output
        0.811192,  // secret_request
        1.898956,  // link
        0.194946,  // link_with_query
        1.279869,  // every_answer
        2.309483,  // role_play
        1.472370,  // shouting
        2.440790,  // addressed_opening
        4.173034,  // while_answering
        1.910127,  // obliges_model
        -4.593365,  // bias
    ]
}
