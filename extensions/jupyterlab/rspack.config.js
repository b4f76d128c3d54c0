// Merged into @jupyter/builder's config. Module and chunk ids by order, not by hashed paths: the default ids hash
// module paths that include where the checkout lives, so a build in another folder (CI) would differ byte for byte.
module.exports = {
  optimization: {
    moduleIds: 'natural',
    chunkIds: 'natural'
  }
};
