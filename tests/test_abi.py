"""The ABI as the harness reads it (docs/emitter-protocol.md): only @main's arguments are bound, by name, and each
violation gets an error that names the function, the argument and what the protocol wants instead."""
import numpy as np
import pytest

from archval.emitter import Config, emit
from archval.harness.core import fixtures
from archval.harness.core.abi import decode_caches, prefill_results
from archval.harness.core.case import run_case
from archval.harness.core.emitter_protocol import CaseError
from archval.harness.core.graph import GraphError, bind, parse_signature

DOUBLE_VIA_HELPER = """module @helpers {
  func.func public @main(%x: tensor<4xf32> loc("x")) -> tensor<4xf32> {
    %0 = call @twice(%x) : (tensor<4xf32>) -> tensor<4xf32>
    return %0 : tensor<4xf32>
  }
  func.func private @twice(%y: tensor<4xf32> loc(unknown)) -> tensor<4xf32> {
    %0 = stablehlo.add %y, %y : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
"""


def test_helper_functions_need_no_names_only_mains_arguments_are_bound():
    graph = parse_signature(DOUBLE_VIA_HELPER)
    assert [a.name for a in graph.functions["main"].args] == ["x"]
    assert [a.name for a in graph.functions["twice"].args] == ["arg0"]


def test_an_unnamed_main_argument_is_named_by_its_function_and_position():
    with pytest.raises(GraphError, match=r"@main's argument 0 \(tensor<4xf32>\) carries no name: its location is "
                                         r"loc\(unknown\), not loc\(\"<name>\"\)"):
        parse_signature(DOUBLE_VIA_HELPER.replace('loc("x")', "loc(unknown)"))


def test_two_arguments_of_one_name_are_refused():
    text = DOUBLE_VIA_HELPER.replace('%x: tensor<4xf32> loc("x")', '%x: tensor<4xf32> loc("x"), %z: tensor<4xf32> loc("x")')
    with pytest.raises(GraphError, match="@main names more than one argument 'x'"):
        parse_signature(text)


def _prefill_main(fixture):
    return parse_signature(emit(Config.from_json(fixture.config_path), "prefill")).functions["main"]


def test_a_misnamed_input_is_told_from_a_weight_and_the_near_name_offered():
    fixture = fixtures.load("llama")
    text = emit(Config.from_json(fixture.config_path), "prefill").replace('loc("positions")', 'loc("pos")')
    record = run_case(fixture, texts={"prefill": text})
    assert record.verdict == "ERROR"
    assert "@main takes no argument named 'positions': this graph's inputs are tokens, positions, real_len" \
        in record.message


def test_an_unknown_argument_names_neither_input_nor_checkpoint_tensor():
    main = _prefill_main(fixtures.load("llama"))
    inputs = {"tokens": np.zeros(16, np.int32), "positions": np.zeros(16, np.int32), "real_len": np.array(1, np.int32)}
    weights = {a.name.replace("model.norm.", "model.nrm."): np.zeros(a.shape, np.float32) for a in main.args if a.name not in inputs}
    with pytest.raises(GraphError, match=r"@main argument 'model.norm.weight' names neither an input of this graph "
                                         r"\(tokens, positions, real_len\) nor a tensor of the checkpoint; did you mean "
                                         r"'model.nrm.weight'\?"):
        bind(main, weights, inputs)


def test_the_variants_are_read_from_the_graphs():
    fixture = fixtures.load("llama")
    layout = prefill_results(_prefill_main(fixture), fixture)
    assert (layout.logits, layout.caches, layout.count) == ("last position", "stacked", 3)
    decode = parse_signature(emit(Config.from_json(fixture.config_path), "decode")).functions["main"]
    variant, caches = decode_caches(decode, fixture)
    assert variant == "stacked" and [c.name for c in caches] == ["k_cache", "v_cache"]


def test_a_decode_graph_with_caches_of_neither_variant_says_what_the_protocol_wants():
    fixture = fixtures.load("llama")
    text = emit(Config.from_json(fixture.config_path), "decode").replace('loc("v_cache")', 'loc("v_cache.0")')
    with pytest.raises(CaseError, match=r"the decode graph's cache arguments are k_cache f32\[2, 32, 2, 16\], "
                                        r"v_cache.0 f32\[2, 32, 2, 16\]; the protocol wants k_cache and v_cache "
                                        r"f32\[2, C, n_kv, D\], or k_cache.i and v_cache.i f32\[C, n_kv, D\]"):
        decode_caches(parse_signature(text).functions["main"], fixture)


def test_a_prefill_graph_with_extra_results_is_told_taps_come_only_on_request():
    fixture = fixtures.load("llama")
    tapped = parse_signature(emit(Config.from_json(fixture.config_path), "prefill", taps=True)).functions["main"]
    assert prefill_results(tapped, fixture, tapped=True).count == 3
    with pytest.raises(CaseError, match="after its caches; taps are returned only when asked with --debug-taps"):
        prefill_results(tapped, fixture)


def decode_returning(results: str, types: str) -> str:
    """The built-in llama decode graph with its return statement (and result types) replaced."""
    text = emit(Config.from_json(fixtures.load("llama").config_path), "decode")
    head, _, tail = text.partition("    return ")
    old_types = tail.split(" : ", 1)[1].split("\n", 1)[0]
    return (head.replace(f"-> ({old_types})", f"-> ({types})") + f"    return {results} : {types}\n  }}\n}}\n")


def llama_texts(decode: str) -> dict:
    return {"prefill": emit(Config.from_json(fixtures.load("llama").config_path), "prefill"), "decode": decode}


@pytest.mark.parametrize("results,types,message", [
    ("%k_cache, %v_cache", "tensor<2x32x2x16xf32>, tensor<2x32x2x16xf32>",
     r"the decode graph's first result is f32\[2, 32, 2, 16\]; the protocol wants the logits f32\[96\] or the "
     r"greedy token i32\[\]"),
    ("{logits}, {k}", "tensor<96xf32>, tensor<2x32x2x16xf32>",
     "the decode graph returns 2 results; the protocol wants the logits, then its 2 caches"),
])
def test_each_decode_result_problem_is_named_by_the_decode_graph_itself(results, types, message):
    text = emit(Config.from_json(fixtures.load("llama").config_path), "decode")
    logits, k = text.split("    return ")[1].split(" : ")[0].split(", ")[:2]
    record = run_case(fixtures.load("llama"), "decode", llama_texts(decode_returning(
        results.format(logits=logits, k=k), types)), xla=False, strict_bound=False)
    assert record.verdict == "ERROR" and record.checks[0].stage == "protocol", record.message
    assert __import__("re").search(message, record.message), record.message


def test_a_decode_graph_returning_the_token_beside_a_logits_prefill_is_judged_by_tokens():
    """The decode case compares tokens throughout (step 0: the prefill logits' argmax), not a shape error."""
    text = emit(Config.from_json(fixtures.load("llama").config_path), "decode")
    logits, k, v = text.split("    return ")[1].split(" : ")[0].split(", ")
    argmax = ('    %tok:2 = "stablehlo.reduce"(' + logits + ', %iota, %lowest, %zero) ({\n'
              "    ^bb0(%x: tensor<f32>, %i: tensor<i32>, %y: tensor<f32>, %j: tensor<i32>):\n"
              '      %gt = "stablehlo.compare"(%x, %y) {comparison_direction = #stablehlo<comparison_direction GT>} : '
              "(tensor<f32>, tensor<f32>) -> tensor<i1>\n"
              '      %m = "stablehlo.select"(%gt, %x, %y) : (tensor<i1>, tensor<f32>, tensor<f32>) -> tensor<f32>\n'
              '      %n = "stablehlo.select"(%gt, %i, %j) : (tensor<i1>, tensor<i32>, tensor<i32>) -> tensor<i32>\n'
              '      "stablehlo.return"(%m, %n) : (tensor<f32>, tensor<i32>) -> ()\n'
              "    }) {dimensions = array<i64: 0>} : (tensor<96xf32>, tensor<96xi32>, tensor<f32>, tensor<i32>) -> "
              "(tensor<f32>, tensor<i32>)\n")
    setup = ("    %iota = stablehlo.iota dim = 0 : tensor<96xi32>\n"
             "    %lowest = stablehlo.constant dense<0xFF800000> : tensor<f32>\n"
             "    %zero = stablehlo.constant dense<0> : tensor<i32>\n")
    decode = decode_returning(f"%tok#1, {k}, {v}", "tensor<i32>, tensor<2x32x2x16xf32>, tensor<2x32x2x16xf32>")
    decode = decode.replace(f"    return %tok#1", setup + argmax + "    return %tok#1")
    record = run_case(fixtures.load("llama"), "decode", llama_texts(decode), xla=False)
    assert record.verdict == "PASS", record.message
    assert record.abi.decode == "token" and record.abi.logits == "last position"
    assert len(record.tokens.steps) == 17 and record.tokens.first_divergence is None
