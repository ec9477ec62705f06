"""Word banks for keys, word values, the essay-like haystack and common-word extraction.

Written out here (not downloaded, not read from the system) so every machine generates the same
tasks from the same seed. Plain, common English words that a tokenizer sees as whole words.
"""

from __future__ import annotations

NOUNS = """
apple anchor arrow attic badge bakery balloon bamboo banana banner barrel basket beacon beetle
bell bench berry bicycle blanket blossom boat bottle boulder bracelet branch bread brick bridge
broom bucket buffalo bundle butter button cabin cactus camel camera canal candle canoe canvas
canyon carpet carrot castle cattle cellar chair chalk channel cherry chimney circus cliff clock
cloud clover coconut collar comet compass copper coral cottage cotton couch crayon cricket crown
crystal cushion dagger daisy desert diamond dolphin donkey dragon drum eagle easel elbow engine
falcon feather fence ferry fiddle field finch flag flame flute forest fountain fox garden garlic
gate giraffe glacier glove goat goose grape gravel guitar hammer harbor harp hawk helmet hill
honey horse island jacket jaguar jar jelly jewel kettle kitten kite ladder lagoon lamp lantern
lemon leopard library lily lion lizard lobster locket magnet mango maple marble meadow melon
mirror mitten monkey moon mountain mushroom napkin needle nest noodle oak ocean olive onion
orange orchard otter owl oyster paddle palace panda parrot peach peanut pearl pebble pencil
pepper piano pillow pine pirate planet plum pocket pond poppy potato puzzle quilt rabbit radish
raft rainbow raven ribbon river robin rocket saddle sailor salmon sandal saucer scarf shadow
shell shovel silver sled slipper snail spider sponge spoon squirrel stable statue stone stove
straw sugar summit sunflower swan sweater table teapot tent thimble thistle thunder tiger timber
tomato torch tower tractor trumpet tulip tunnel turtle umbrella valley velvet violin wagon walnut
walrus wheel whistle willow window wizard wolf yacht zebra acorn almond atlas avocado badger
barley beaver biscuit bonnet bucket butterfly cabbage calendar candy caramel cedar cheetah
chestnut cinnamon cobra cookie cracker crane cupboard curtain dandelion dove emerald fig
flamingo gazelle ginger gondola hamster hedgehog heron hyacinth iceberg igloo jasmine kayak
koala lavender lettuce llama magpie mantle meteor minnow moose moth muffin nectar nutmeg ostrich
paprika pelican penguin pepper pigeon pudding pumpkin quail raisin reindeer rhubarb saffron
sardine scooter seagull sequoia sparrow spinach squash starfish tangerine toucan trout turnip
vanilla vulture waffle whale yogurt
"""

ADJECTIVES = """
ancient bitter blue bold brave breezy bright brisk calm careful cheerful chilly clever cloudy
cozy crisp curious damp dazzling deep delicate distant dusty eager early elegant empty endless
faint famous fancy fierce fluffy fragrant frosty gentle giant glad gleaming golden graceful
grand green happy hasty heavy hidden hollow humble icy jolly juicy keen kind large lazy little
lively lonely loud lucky lush mellow merry mighty misty modest narrow neat nimble noble odd
orange patient plain polite proud purple quick quiet rapid rare red rich rough round royal rusty
sandy scarlet secret sharp shiny short silent silky simple sleepy slow small smooth snowy soft
solid sour spare spicy splendid steady steep sticky stormy strange striped sturdy sunny sweet
swift tall tame tender thick thin tidy tiny tired tough tranquil tricky velvet vivid warm wavy
wealthy whole wide wild windy wise witty wooden yellow young zealous
"""

VERBS = """
admire answer arrange borrow build carry catch change choose clean climb collect cook count
cover cross dance decide deliver describe design discover draw drive enjoy explain explore fetch
fill find fix fold follow gather grow guide hang help hold imagine improve invent join jump keep
knock laugh lead learn lift listen measure mend move notice open paint pack plant play polish
prepare protect pull push reach read repair rescue return ride sail search share shine sing
sketch solve sort spend spread study swim teach throw travel trust visit wander wash watch weave
whisper wonder write
"""


def _split(text: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for word in text.split():
        seen.setdefault(word, None)
    return tuple(seen)


NOUN_LIST = _split(NOUNS)
ADJECTIVE_LIST = _split(ADJECTIVES)
VERB_LIST = _split(VERBS)
# Everything, without repeats: the pool for common-word extraction.
ALL_WORDS = tuple(dict.fromkeys(NOUN_LIST + ADJECTIVE_LIST + VERB_LIST))
