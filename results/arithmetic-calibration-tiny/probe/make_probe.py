"""The arithmetic probe of docs/default-corpus.md: 3,000 one-digit problems (seeded), written
three times in the corpus's own format as three domains of a Pile-format corpus: `Correct`
(the answer), `Tight` (the answer +- 1 or 2, never negative) and `Iid` (another problem's
answer). The domains differ only in the answer token, so per-domain NLL differences measure how
much the model prefers the correct answer. Writes probe-corpus/{train/00,val,test}.jsonl; the
splits are identical, only val is scored.
"""
import os
import random, json
rng=random.Random(3)
def l1():
    a,b=rng.randint(0,9),rng.randint(0,9)
    if rng.random()<0.5: return f'What is {a} + {b}?', a+b
    a,b=max(a,b),min(a,b); return f'What is {a} - {b}?', a-b
probs=[l1() for _ in range(3000)]
def wrong(ans):
    while True:
        d=rng.choice([-2,-1,1,2])
        if ans+d>=0: return ans+d
def iid(ans):
    while True:
        _,v=l1()
        if v!=ans: return v
docs={'Correct':[], 'Tight':[], 'Iid':[]}
for i in range(0,3000,20):
    chunk=probs[i:i+20]
    for name,f in [('Correct',lambda a:a),('Tight',wrong),('Iid',iid)]:
        docs[name].append('\n'.join(f"Question: {q}\nAnswer: {f(a)}\n" for q,a in chunk))
os.makedirs('probe-corpus/train', exist_ok=True)
for split in ['train/00','val','test']:
    with open(f'probe-corpus/{split}.jsonl','w') as fo:
        for name,ds in docs.items():
            for d in ds: fo.write(json.dumps({"text":d,"meta":{"pile_set_name":name}})+"\n")
