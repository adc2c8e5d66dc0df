"""The DIN example as DeepCTR tutorials give it, with only `deepctr` renamed to `dinrec`.

Unlike examples/deepctr_din_demo.py it has no length column (padding is id 0), and the
columns sharing a table disagree, as the tutorial's do:

- item_id declares vocabulary_size 3 but takes id 3: it shares table 'item_id' with
  hist_item_id (vocabulary_size 4), and the table has 4 rows, so id 3 is valid;
- cate_id declares embedding_dim 4, hist_cate_id (same table) 3: as in DeepCTR, the last
  column in DeepCTR's build order (SparseFeats, then VarLenSparseFeats) gives the table its
  dim, so both read 3-wide embeddings.

dinrec warns once for each disagreement, naming the columns.
"""

import numpy as np

from dinrec.feature_column import SparseFeat, VarLenSparseFeat, get_feature_names
from dinrec.models import DIN


def get_xy_fd():
    feature_columns = [SparseFeat('item_id', vocabulary_size=3, embedding_dim=8),
                       SparseFeat('cate_id', vocabulary_size=2, embedding_dim=4)]
    feature_columns += [
        VarLenSparseFeat(SparseFeat('hist_item_id', vocabulary_size=3 + 1, embedding_dim=8,
                                    embedding_name='item_id'), maxlen=4),
        VarLenSparseFeat(SparseFeat('hist_cate_id', 2 + 1, embedding_dim=2 + 1,
                                    embedding_name='cate_id'), maxlen=4)]
    behavior_feature_list = ["item_id", "cate_id"]
    iid = np.array([1, 2, 3])  # 0 is mask value
    cate_id = np.array([1, 2, 2])  # 0 is mask value

    hist_iid = np.array([[1, 2, 3, 0], [3, 2, 1, 0], [1, 2, 0, 0]])
    hist_cate_id = np.array([[1, 2, 2, 0], [2, 2, 1, 0], [1, 2, 0, 0]])

    feature_dict = {'item_id': iid, 'cate_id': cate_id,
                    'hist_item_id': hist_iid, 'hist_cate_id': hist_cate_id}
    x = {name: feature_dict[name] for name in get_feature_names(feature_columns)}
    y = np.array([1, 0, 1])
    return x, y, feature_columns, behavior_feature_list


if __name__ == "__main__":
    x, y, feature_columns, behavior_feature_list = get_xy_fd()
    model = DIN(feature_columns, behavior_feature_list)
    model.compile('adam', 'binary_crossentropy', metrics=['binary_crossentropy'])
    history = model.fit(x, y, verbose=1, epochs=10)
    print(model.predict(x))
