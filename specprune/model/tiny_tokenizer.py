"""A word-level tokenizer built in code for the tiny presets (no download).

Llama-2's special ids are kept (<unk>=0, <s>=1, </s>=2) so the OpenVLA conventions
(BOS, stop token 2) hold; '▁' plays the role of Llama's empty token 29871. Saved and
loaded as a standard tokenizer.json, so checkpoints exercise the real loading path.
"""
from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "\u2581")
EMPTY_TOKEN = "\u2581"
WORDS = """
In What Out in : what action should the robot take to ? out a an and of on onto into at
from with it
pick up lift grasp place put push pull move open close turn slide stack drop reach touch
cube block bowl plate mug cup box drawer door can bottle lid basket tray table top bottom
red green blue yellow orange purple black white pink brown gray grey small large big
left right front back middle center near far over under next beside behind between
first then near side one two three object objects gripper stove microwave cabinet shelf
ketchup butter cheese milk soup sauce cream bbq alphabet tomato salad dressing chocolate
pudding wine rack caddy book frying pan moka pot plates bowls mugs cups cubes blocks
""".split()


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def empty_token_id(tokenizer) -> int:
    return int(tokenizer.convert_tokens_to_ids(EMPTY_TOKEN))
