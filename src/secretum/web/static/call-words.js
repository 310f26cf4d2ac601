// Safety code words: the 6 digits of the code read as three pairs, each pair (00-99) a word.
// The two lists are translations of each other, index by index, so a patient reading French
// and a practitioner reading English compare the same three things ("cat" = "chat").
// Plain, concrete nouns, easy to say and to picture; no two alike in either language.

export const WORDS = Object.freeze({
  en: Object.freeze([
    "anchor", "apple", "arrow", "bear", "bell", "bird", "boat", "book", "bottle", "bread",
    "bridge", "brush", "butter", "cake", "camel", "candle", "carrot", "castle", "cat", "chair",
    "cherry", "clock", "cloud", "coat", "crown", "cow", "crab", "desk", "dog", "dolphin",
    "door", "dragon", "drum", "duck", "eagle", "egg", "elephant", "feather", "fish", "flag",
    "flower", "fork", "fox", "frog", "garden", "ghost", "giraffe", "glove", "goat", "grape",
    "guitar", "hammer", "hat", "heart", "horse", "house", "island", "jacket", "key", "kite",
    "ladder", "lamp", "leaf", "lemon", "lion", "padlock", "moon", "mountain", "mouse", "mushroom",
    "needle", "nest", "onion", "orange", "owl", "panda", "pear", "pencil", "piano", "pig",
    "pillow", "pumpkin", "rabbit", "rainbow", "river", "rocket", "rose", "sheep", "shell", "shoe",
    "snail", "snake", "spoon", "star", "sun", "table", "tiger", "tomato", "train", "tree",
  ]),
  fr: Object.freeze([
    "ancre", "pomme", "flèche", "ours", "cloche", "oiseau", "bateau", "livre", "bouteille", "pain",
    "pont", "brosse", "beurre", "gâteau", "chameau", "bougie", "carotte", "château", "chat", "chaise",
    "cerise", "horloge", "nuage", "manteau", "couronne", "vache", "crabe", "bureau", "chien", "dauphin",
    "porte", "dragon", "tambour", "canard", "aigle", "œuf", "éléphant", "plume", "poisson", "drapeau",
    "fleur", "fourchette", "renard", "grenouille", "jardin", "fantôme", "girafe", "gant", "chèvre", "raisin",
    "guitare", "marteau", "chapeau", "cœur", "cheval", "maison", "île", "veste", "clé", "cerf-volant",
    "échelle", "lampe", "feuille", "citron", "lion", "cadenas", "lune", "montagne", "souris", "champignon",
    "aiguille", "nid", "oignon", "orange", "hibou", "panda", "poire", "crayon", "piano", "cochon",
    "oreiller", "citrouille", "lapin", "arc-en-ciel", "rivière", "fusée", "rose", "mouton", "coquillage", "chaussure",
    "escargot", "serpent", "cuillère", "étoile", "soleil", "table", "tigre", "tomate", "train", "arbre",
  ]),
});

/** The three words of a 6-digit safety code in a language ("fr" or "en"). */
export function codeWords(code, lang) {
  const list = WORDS[lang] ?? WORDS.fr;
  if (!/^[0-9]{6}$/.test(code)) throw new Error("a safety code is 6 digits");
  return [0, 2, 4].map((i) => list[Number(code.slice(i, i + 2))]);
}
