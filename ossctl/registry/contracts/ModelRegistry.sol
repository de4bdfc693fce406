// SPDX-License-Identifier: MIT
// ossctl's ModelRegistry: ABI-compatible, for every function ossctl uses, with the
// ModelRegistry contracts that model marketplaces already run.
pragma solidity 0.8.30;

contract ModelRegistry {
    struct Model {
        string huggingfaceRepo;
        string fileName;
        bytes32 sha256Hash;
        uint256 approvalTier;
        bool active;
        uint256 timestamp;
    }

    // Tier 1: added directly by the owner (a trusted model).
    uint256 public constant TIER_TRUSTED = 1;

    address public owner;
    mapping(bytes32 => Model) private models;
    mapping(bytes32 => bool) private trustedModels;
    bytes32[] private modelList;

    event ModelAdded(bytes32 indexed modelId, string huggingfaceRepo, string fileName, uint256 tier);
    event ModelDeactivated(bytes32 indexed modelId);
    event ModelReactivated(bytes32 indexed modelId);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    modifier onlyOwner() {
        require(msg.sender == owner, "Only owner");
        _;
    }

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    function getModelId(string memory repo, string memory fileName) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(repo, "/", fileName));
    }

    function addTrustedModel(string calldata huggingfaceRepo, string calldata fileName, bytes32 sha256Hash)
        external
        onlyOwner
    {
        require(sha256Hash != bytes32(0), "Invalid hash");
        require(bytes(huggingfaceRepo).length > 0 && bytes(fileName).length > 0, "Invalid model");
        bytes32 modelId = getModelId(huggingfaceRepo, fileName);
        require(models[modelId].timestamp == 0, "Model already exists");
        models[modelId] = Model(huggingfaceRepo, fileName, sha256Hash, TIER_TRUSTED, true, block.timestamp);
        trustedModels[modelId] = true;
        modelList.push(modelId);
        emit ModelAdded(modelId, huggingfaceRepo, fileName, TIER_TRUSTED);
    }

    function deactivateModel(bytes32 modelId) external onlyOwner {
        require(models[modelId].timestamp != 0, "Model not found");
        require(models[modelId].active, "Model not active");
        models[modelId].active = false;
        emit ModelDeactivated(modelId);
    }

    function reactivateModel(bytes32 modelId) external onlyOwner {
        require(models[modelId].timestamp != 0, "Model not found");
        require(!models[modelId].active, "Model already active");
        models[modelId].active = true;
        emit ModelReactivated(modelId);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "Invalid owner");
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function isModelApproved(bytes32 modelId) external view returns (bool) {
        return models[modelId].timestamp != 0 && models[modelId].active;
    }

    function isTrustedModel(bytes32 modelId) external view returns (bool) {
        return trustedModels[modelId];
    }

    function getModelHash(bytes32 modelId) external view returns (bytes32) {
        return models[modelId].sha256Hash;
    }

    function getModel(bytes32 modelId) external view returns (Model memory) {
        return models[modelId];
    }

    function getAllModels() external view returns (bytes32[] memory) {
        return modelList;
    }
}
